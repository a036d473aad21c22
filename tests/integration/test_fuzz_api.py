"""Schemathesis fuzzes the JSON API of a real server from its own OpenAPI
document, with a valid token: no server error, no answer outside the
document, no schema-valid request refused, no invalid one accepted."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ADMIN, ADMIN_TOKEN, artifacts_dir, require

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _run(url: str, token: str, tmp_path: Path, *select: str, examples: int = 60) -> str:
    config = tmp_path / "schemathesis.toml"
    # the board that exists; and strings UTF-8 can encode, without NUL: the
    # document says so with a pattern (^[^\u0000\ud800-\udfff]*$) that the
    # fuzzer's generator cannot read, so it is told in its own terms
    # (followed logs are not fuzzed: a followed log of a job that never
    # starts is held open until its reader leaves; tests/unit/test_live_logs*
    # follow them)
    config.write_text('[generation]\ncodec = "utf-8"\nallow-x00 = false\n\n'
                      '[parameters]\n"path.name" = "fuzz"\n"query.follow" = false\n')
    cmd = [str(SCHEMATHESIS), "--config-file", str(config), "run",
           f"{url}/api/v1/openapi.json", "-H", f"Authorization: Bearer {token}",
           "--checks", "all", "--max-examples", str(examples), "--seed", "20261125",
           "--report-dir", str(tmp_path / "report"),
           # not the stateful phase: its sequences push jobs 'after' keys that no
           # earlier request created, which the server refuses by a rule across
           # requests that the document cannot state (the fuzzing phase covers
           # every operation)
           "--phases", "examples,coverage,fuzzing", *select]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = done.stdout + done.stderr
    (artifacts_dir() / "schemathesis.txt").write_text(out)
    failures = out.find("FAILURES")
    assert done.returncode == 0, out[failures:failures + 5000] if failures >= 0 else out[-5000:]
    return out


def _generated(out: str) -> int:
    m = re.search(r"(\d+) generated", out)
    return int(m.group(1)) if m else 0


def test_the_api_holds_to_its_document(live_server_both, tmp_path):
    require(SCHEMATHESIS.exists() or shutil.which("schemathesis") is not None,
            "schemathesis is not installed (pip install '.[test]')")
    live_server = live_server_both
    # claims the fuzzer sends with "wait" are held 1 s at most, not up to 60
    live_server.env["JOBSERVER_CLAIM_WAIT_MAX"] = "1"
    # and event streams end after a second (the fuzzer reads each to its end)
    live_server.env["JOBSERVER_SSE_MAX_SECONDS"] = "1"
    live_server.start()
    r = requests.post(f"{live_server.url}/api/v1/boards", headers=ADMIN,
                      json={"name": "fuzz", "lifetimes": [0, 5, 0]})
    r.raise_for_status()
    token = r.json()["token"]
    requests.post(f"{live_server.url}/api/v1/boards/fuzz/jobs",
                  headers={"Authorization": f"Bearer {token}"},
                  json=[{"key": f"k{i}", "payload": {"i": i}} for i in range(50)])
    # every operation but the board's deletion, with the board's token
    n = _generated(_run(live_server.url, token, tmp_path, "--exclude-method", "DELETE"))
    # creating boards, with the admin token
    # (two rules across fields, one name per lifetime and an odd number of
    # stages, are in the document's words only: JSON Schema cannot say them)
    n += _generated(_run(live_server.url, ADMIN_TOKEN, tmp_path, "--include-name",
                         "POST /boards", "--exclude-checks", "positive_data_acceptance",
                         examples=30))
    # and deleting the board, last
    n += _generated(_run(live_server.url, token, tmp_path, "--include-name",
                         "DELETE /boards/{name}", examples=20))
    assert n > 1500, n
    log = live_server.log.read_text() if live_server.log else ""
    assert "Traceback" not in log, log[-4000:]
    print(f"schemathesis: {n} requests generated, none failed")
