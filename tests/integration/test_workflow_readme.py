"""The README's Workflows section, run as written against a live server and
real `jobworker run` processes: the three-stage pipeline (pipeline.py and
the commands that start a worker and run it) and the `jobworker submit`
example."""
from __future__ import annotations

import json
import re
import subprocess

import requests

from tests.conftest import ADMIN, ROOT

README = ROOT / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Workflows")
    return text[start:text.index("\n## ", start + 1)]


def for_this_server(block: str, url: str) -> str:
    return block.replace("http://127.0.0.1:5000", url).replace(".venv/bin/",
                                                               f"{ROOT}/.venv/bin/")


def test_readme_pipeline_runs_as_written(live_server, tmp_path):
    text = section()
    pipeline = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    commands = re.search(r"```sh\n(export JOBSERVER_URL=.*?)```", text, re.S).group(1)
    assert "python pipeline.py" in commands and "jobworker run --stage 0" in commands
    (tmp_path / "pipeline.py").write_text(pipeline)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c",
                             for_this_server(commands, live_server.url)],
                            cwd=tmp_path, env=dict(live_server.env), capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "{'created': 22, 'existing': 0, 'changed': 0, 'changed_keys': []}" in out, out
    assert "failed: none" in out, out
    assert re.search(r'^\s*result\s+\{"total":"2870"\}$', out, re.M), out
    assert (tmp_path / "total.txt").read_text() == "2870\n"

    # the README's other claims: the resume adds nothing, notes are on the jobs
    env = dict(live_server.env)
    token = subprocess.run(
        [f"{ROOT}/.venv/bin/jobserver", "token", "create", "pipeline"], env=env, cwd=tmp_path,
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    env.update(JOBSERVER_URL=live_server.url, JOBSERVER_BOARD="pipeline",
               JOBSERVER_TOKEN=token)
    again = subprocess.run([f"{ROOT}/.venv/bin/python", "pipeline.py"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "{'created': 0, 'existing': 22, 'changed': 0, 'changed_keys': []}" in again.stdout
    headers = {"Authorization": f"Bearer {token}"}
    sim = requests.get(f"{live_server.url}/api/v1/boards/pipeline/jobs/simulate-7",
                       headers=headers, timeout=30).json()
    assert sim["result"] == {"square": "49"}
    assert [(e["kind"], e["detail"]) for e in sim["events"] if e["kind"] == "var"] == [
        ("var", {"name": "square", "value": "49"})]
    prep = requests.get(f"{live_server.url}/api/v1/boards/pipeline/jobs/preprocess",
                        headers=headers, timeout=30).json()
    assert ("log", {"message": "20 inputs"}) in [(e["kind"], e["detail"])
                                                 for e in prep["events"]]


def test_readme_submit_example_runs_as_written(live_server, tmp_path):
    text = section()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S)
                 if "jobworker submit" in b)
    r = requests.post(f"{live_server.url}/api/v1/boards", headers=ADMIN,
                      json={"name": "submitted"}, timeout=30)
    r.raise_for_status()
    env = dict(live_server.env, JOBSERVER_URL=live_server.url, JOBSERVER_BOARD="submitted",
               JOBSERVER_TOKEN=r.json()["token"])
    result = subprocess.run(["bash", "-euo", "pipefail", "-c",
                             for_this_server(block, live_server.url)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done 2, failed for good 0" in result.stderr
    job = requests.get(f"{live_server.url}/api/v1/boards/submitted/jobs/count",
                       headers={"Authorization": f"Bearer {r.json()['token']}"},
                       timeout=30).json()
    assert job["result"] == {"lines": "5"}, json.dumps(job)[:2000]
    assert job["payload"]["env"] == {"LC_ALL": "C"}
    assert job["payload"]["cwd"] == str(tmp_path)
