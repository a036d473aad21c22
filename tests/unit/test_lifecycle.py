"""The one door for state changes: push, claim, update, sweep, requeue."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from jobserver import lifecycle, queries
from jobserver.extensions import db
from jobserver.lifecycle import NewJob, NotFound, UnknownStage
from jobserver.models import Attempt, Event, Job


def one(model):
    db.session.commit()  # expire what the session remembers: read the database
    return db.session.execute(select(model)).scalar_one()


def jobs(n: int, stage: int = 0, start: int = 0) -> list[NewJob]:
    return [NewJob(str(i), f'{{"n": {i}}}', stage) for i in range(start, start + n)]


def test_push_is_idempotent_and_counts(app):
    b = lifecycle.ensure_board(7)
    assert lifecycle.push(b.id, jobs(10)) == (10, 0)
    assert lifecycle.push(b.id, jobs(15)) == (5, 10)
    assert db.session.execute(select(db.func.count()).select_from(Job)).scalar() == 15


def test_push_keeps_existing_payload(app):
    b = lifecycle.ensure_board(7)
    lifecycle.push(b.id, [NewJob("1", '"first"', 0)])
    lifecycle.push(b.id, [NewJob("1", '"second"', 0)])
    assert db.session.execute(select(Job.payload)).scalar_one() == '"first"'


def test_claim_moves_to_next_stage_oldest_first(app):
    b = lifecycle.ensure_board(7)
    lifecycle.push(b.id, jobs(3))
    first = lifecycle.claim(b.id, 0, worker="w1")
    assert [j.key for j in first] == ["0"] and first[0].stage == 0
    job = db.session.execute(select(Job).where(Job.key == "0")).scalar_one()
    assert job.stage == 1 and job.attempts == 1
    assert [j.key for j in lifecycle.claim(b.id, 0, n=5)] == ["1", "2"]
    assert lifecycle.claim(b.id, 0) == []


def test_claim_to_custom_stage_and_attempt_recorded(app):
    b = lifecycle.ensure_board(7)
    lifecycle.push(b.id, jobs(1))
    got = lifecycle.claim(b.id, 0, to_stage=5, worker="node-3")
    att = db.session.get(Attempt, got[0].attempt_id)
    assert att.worker == "node-3" and att.outcome == "running" and att.stage == 0
    assert db.session.execute(select(Job.stage)).scalar_one() == 5


def test_update_job_closes_attempt_and_sets_file(app):
    b = lifecycle.ensure_board(7)
    lifecycle.push(b.id, jobs(1))
    lifecycle.claim(b.id, 0)
    lifecycle.update_job(b.id, "0", 2, filename="out.h5", payload='{"done": true}')
    job = one(Job)
    assert (job.stage, job.filename, job.payload) == (2, "out.h5", '{"done": true}')
    att = one(Attempt)
    assert att.outcome == "advanced" and att.ended_at is not None
    kinds = db.session.execute(select(Event.kind).order_by(Event.id)).scalars().all()
    assert kinds == ["pushed", "claimed", "advanced"]  # one event each, job by job


def test_update_unknown_job_writes_nothing(app):
    b = lifecycle.ensure_board(7)
    with pytest.raises(NotFound):
        lifecycle.update_job(b.id, "99", 2)
    assert db.session.execute(select(Event)).first() is None


def test_declared_stages_bound_claims_pushes_and_updates(app):
    b = lifecycle.ensure_board(7)
    lifecycle.set_lifetimes_if_unset(b.id, [60, 60, 0])
    with pytest.raises(UnknownStage):
        lifecycle.push(b.id, jobs(2, stage=3))
    with pytest.raises(UnknownStage):
        lifecycle.claim(b.id, 2)  # would move to stage 3
    assert db.session.execute(select(Job)).first() is None


def test_init_does_not_overwrite(app):
    b = lifecycle.ensure_board(7)
    assert lifecycle.set_lifetimes_if_unset(b.id, [1, 2, 0]) == {0: 1.0, 1: 2.0, 2: 0.0}
    assert lifecycle.set_lifetimes_if_unset(b.id, [9, 9, 9]) == {0: 1.0, 1: 2.0, 2: 0.0}
    assert lifecycle.set_lifetime(b.id, 1, 0.5) == {0: 1.0, 1: 0.5, 2: 0.0}


def test_boards_are_isolated(app):
    a, b = lifecycle.ensure_board(1), lifecycle.ensure_board(2)
    lifecycle.push(a.id, jobs(3))
    assert lifecycle.claim(b.id, 0) == []
    with pytest.raises(NotFound):
        lifecycle.update_job(b.id, "0", 2)


def test_sweep_flags_requeues_then_fails_after_max_attempts(app):
    b = lifecycle.ensure_board(7)
    lifecycle.set_lifetimes_if_unset(b.id, [0, 1, 0])  # stage 1: one minute
    lifecycle.push(b.id, jobs(1))
    for attempt in range(1, 4):
        assert len(lifecycle.claim(b.id, 0)) == 1
        assert lifecycle.sweep(now=time.time() + 30) == lifecycle.SweepResult(0, 0, 0)
        result = lifecycle.sweep(now=time.time() + 61)
        job = one(Job)
        if attempt < 3:
            assert result == lifecycle.SweepResult(1, 1, 0)
            assert (job.stage, job.state, job.flagged) == (0, "active", False)
        else:
            assert result == lifecycle.SweepResult(1, 0, 1)
            assert (job.stage, job.state) == (0, "failed")  # at the stage it was claimed from
    outcomes = db.session.execute(select(Attempt.outcome)).scalars().all()
    assert outcomes == ["lost", "lost", "lost"]
    assert lifecycle.claim(b.id, 0) == []


def test_sweep_without_auto_requeue_only_flags(app):
    b = lifecycle.ensure_board(7)
    lifecycle.set_board_options(b.id, auto_requeue=False)
    lifecycle.set_lifetimes_if_unset(b.id, [0, 1, 0])
    lifecycle.push(b.id, jobs(2))
    lifecycle.claim(b.id, 0, n=2)
    assert lifecycle.sweep(now=time.time() + 120) == lifecycle.SweepResult(2, 0, 0)
    assert queries.count_flagged_fast(b.id) == 2
    assert lifecycle.requeue_flagged(b.id, 1, 0) == 2
    assert queries.count_flagged_fast(b.id) == 0
    assert len(lifecycle.claim(b.id, 0, n=5)) == 2


def test_lifetime_validation(app):
    b = lifecycle.ensure_board(7)
    with pytest.raises(lifecycle.LifecycleError):
        lifecycle.set_lifetimes_if_unset(b.id, [-1])
    with pytest.raises(lifecycle.LifecycleError):
        lifecycle.set_lifetimes_if_unset(b.id, [])


@pytest.mark.parametrize("analyzed", [False, True])
def test_reports_find_attempts_by_key_not_by_scanning_history(sqlite_app, analyzed):
    """advance/fail/release/heartbeat look their attempts up by primary key,
    so a report costs the same on a board with a long history (SQLite's
    planner walked a board-wide index, with or without statistics)."""
    from sqlalchemy import event

    from jobserver.lifecycle import Advance

    b = lifecycle.create_board("history", [0, 60, 0])
    lifecycle.push(b.id, jobs(400))
    if analyzed:  # statistics as the sweeper takes them after a big push
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    for _ in range(3):
        lifecycle.advance(b.id, [Advance(j.attempt_id)
                                 for j in lifecycle.claim(b.id, 0, 100, worker="w", lease=True)])
    held = lifecycle.claim(b.id, 0, 4, worker="w", lease=True)
    selects: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "attempts" in statement:
            selects.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        lifecycle.heartbeat(b.id, "w", running=[j.attempt_id for j in held])
        lifecycle.advance(b.id, [Advance(held[0].attempt_id)])
        lifecycle.fail(b.id, held[1].attempt_id, "boom")
        lifecycle.release(b.id, [held[2].attempt_id])
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(selects) >= 4
    with db.engine.connect() as conn:
        for statement, parameters in selects:
            plan = " / ".join(r[3] for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            assert "SCAN attempts" not in plan and "ix_attempts_worker" not in plan, plan
