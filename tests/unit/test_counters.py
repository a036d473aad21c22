"""The kept counters always equal a recount, whatever happened to the jobs."""
from __future__ import annotations

import random
import time

from sqlalchemy import func, select

from jobserver import lifecycle
from jobserver.extensions import db
from jobserver.lifecycle import Advance, NewJob
from jobserver.models import Job, StageCount, Throughput


def recount(board_id: int) -> dict[tuple[int, str], int]:
    rows = db.session.execute(select(Job.stage, Job.state, func.count())
                              .where(Job.board_id == board_id)
                              .group_by(Job.stage, Job.state)).all()
    db.session.commit()
    return {(s, st): n for s, st, n in rows}


def kept(board_id: int) -> dict[tuple[int, str], int]:
    rows = db.session.execute(select(StageCount.stage, StageCount.state, StageCount.n)
                              .where(StageCount.board_id == board_id)).all()
    db.session.commit()
    return {(s, st): n for s, st, n in rows if n}


def test_counters_follow_every_lifecycle_step(app):
    rng = random.Random(7)
    b = lifecycle.create_board("c", [0, 1, 0, 1, 0], max_attempts=2)
    c = lifecycle.ensure_board(99)  # a classic board beside it
    lifecycle.push(b.id, [NewJob(f"k{i}", "null", rng.choice([0, 0, 2])) for i in range(300)])
    lifecycle.push(b.id, [NewJob(f"k{i}", "null", 0) for i in range(250, 350)])  # overlap
    lifecycle.push(c.id, [NewJob(str(i), "null", 0) for i in range(50)])
    held = []
    for step in range(300):
        op = rng.random()
        if op < 0.35:
            held += lifecycle.claim(b.id, rng.choice([0, 2]), rng.randint(1, 5), worker="w")
        elif op < 0.55 and held:
            lifecycle.advance(b.id, [Advance(held.pop().attempt_id)])
        elif op < 0.65 and held:
            lifecycle.fail(b.id, held.pop().attempt_id, "boom")
        elif op < 0.72 and held:
            lifecycle.release(b.id, [held.pop().attempt_id])
        elif op < 0.77:
            lifecycle.cancel(b.id, [f"k{rng.randrange(350)}"])
        elif op < 0.85:
            got = lifecycle.claim(c.id, 0)
            if got:
                lifecycle.update_job(c.id, got[0].key, 2)
        elif op < 0.9:
            lifecycle.update_job(b.id, f"k{rng.randrange(350)}", rng.choice([0, 2, 4]))
            held = []  # a classic move may strand attempts: forget them
        else:
            lifecycle.sweep(now=time.time() + rng.choice([0, 120]))
            held = []
    assert kept(b.id) == recount(b.id)
    assert kept(c.id) == recount(c.id)
    reached = db.session.execute(select(func.sum(Throughput.n))
                                 .where(Throughput.board_id == c.id)).scalar()
    assert reached == recount(c.id).get((2, "active"), 0)
