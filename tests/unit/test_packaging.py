"""A plain `pip install .` must carry every package (setup.cfg lists them)."""
from __future__ import annotations

import configparser

from tests.conftest import ROOT


def test_every_python_package_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("jobserver", "worker_client")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
