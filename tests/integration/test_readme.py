"""The README's worker example, run as written against a live server."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT


def test_readme_worker_example_runs(live_server, tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(export JOBSERVER_URL=.*?)```", text, re.S).group(1)
    script = block.replace("http://127.0.0.1:5000", live_server.url)
    script = script.replace(".venv/bin/", f"{ROOT}/.venv/bin/")
    env = dict(live_server.env)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created 100, existing 0" in result.stdout
    assert "stage 2: 100" in result.stdout
