"""Several server processes on one database (issue 11): one sweeps at a time."""
from __future__ import annotations

import time

from jobserver import lifecycle
from jobserver.dialect import SWEEP_LOCK
from jobserver.extensions import db
from jobserver.lifecycle import NewJob


def test_a_sweep_finding_another_under_way_does_nothing(app):
    b = lifecycle.create_board("swept", [0, 1, 0])
    lifecycle.push(b.id, [NewJob("k", "null", 0)])
    lifecycle.claim(b.id, 0, 1, worker="w", lease=True)
    later = time.time() + 120
    if db.engine.dialect.name == "sqlite":  # one writer: sweeps never overlap there
        assert lifecycle.sweep(b.id, now=later).requeued == 1
        return
    with db.engine.connect() as other:  # another process's sweep, holding the lock
        other.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
        assert lifecycle.sweep(b.id, now=later) == lifecycle.SweepResult(0, 0, 0)
        other.rollback()
    assert lifecycle.sweep(b.id, now=later).requeued == 1
