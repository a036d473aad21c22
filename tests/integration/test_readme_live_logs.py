"""The README's live-log example, run as written (after its worker
example, whose board and variables it uses) against a live server."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_readme_live_log_example_runs(live_server, tmp_path):
    text = (ROOT / "README.md").read_text()
    setup = re.search(r"```sh\n(export JOBSERVER_URL=.*?)```", text, re.S).group(1)
    setup = "\n".join(line for line in setup.splitlines()
                      if line.startswith("export"))  # the board and the variables
    block = re.search(r"```sh\n(echo '\{\"key\": \"sim/1\"\}'.*?)```", text, re.S).group(1)
    bindir = str(Path(sys.executable).parent) + "/"  # the environment running the tests
    script = (setup + "\n" + block).replace("http://127.0.0.1:5000", live_server.url)
    script = script.replace(".venv/bin/", bindir)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script + "\nwait\n"],
                            cwd=tmp_path, env=dict(live_server.env), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("created 1, existing 0\nstep 1\n")  # while the job ran
    # --follow and curl -N print it all, in order; stderr had nothing
    assert out.count("step 1\nstep 2\nstep 3\n") == 2, out
