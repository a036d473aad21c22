"""The lean hot path: statements run on the driver's cursor (dialect.Hot),
the cap remembered per process, commits that do not wait for the disk."""
from __future__ import annotations

import json

from sqlalchemy import event

from jobserver import lifecycle
from jobserver.dialect import write_transaction
from jobserver.extensions import db
from jobserver.lifecycle import Advance, NewJob


def _jobs(n: int) -> list[NewJob]:
    return [NewJob(str(i), json.dumps({"i": i}), 0) for i in range(n)]


def test_a_classic_job_goes_round_in_a_few_statements(app):
    """A claim is four statements and a report six on SQLite, three and five
    on PostgreSQL (where each is a round trip, and the event goes with the
    attempt's insert or end), whatever the board's size (the counters move
    in one statement; the report reads the job, the last stage and whether
    jobs wait on it at once)."""
    b = lifecycle.ensure_board(7)
    lifecycle.set_lifetimes_if_unset(b.id, [60, 60, 0])
    lifecycle.push(b.id, _jobs(50))
    lifecycle.claim(b.id, 0)  # the cap is read once, then remembered
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        # (pg_notify: the wake-up's own connection telling of the push)
        if not statement.lstrip().upper().startswith(("SET ", "BEGIN", "COMMIT")) \
                and "pg_notify" not in statement:
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        got = lifecycle.claim(b.id, 0)
        claim = len(statements)
        lifecycle.update_job(b.id, got[0].key, 2)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    want = (3, 5) if db.engine.dialect.name == "postgresql" else (4, 6)
    assert (claim, len(statements) - claim) == want, [s[:50] for s in statements]
    with db.engine.connect() as conn:
        counts = dict(conn.exec_driver_sql(
            "SELECT stage, n FROM stage_counts WHERE n != 0").all())
    assert counts == {0: 48, 1: 1, 2: 1}


def test_a_cap_set_in_this_process_holds_at_the_next_claim(app):
    """Claims of an uncapped board skip reading max_running (remembered for
    a second); setting a cap here forgets that at once."""
    b = lifecycle.create_board("capped", [0, 60, 0])
    lifecycle.push_jobs(b.id, _jobs(10))
    assert len(lifecycle.claim(b.id, 0, 2, worker="w", lease=True)) == 2  # uncapped, remembered
    lifecycle.set_board_options(b.id, max_running=3)
    assert len(lifecycle.claim(b.id, 0, 5, worker="w", lease=True)) == 1
    lifecycle.set_board_options(b.id, max_running=None)
    assert len(lifecycle.claim(b.id, 0, 5, worker="w", lease=True)) == 5


def test_single_and_batch_advances_agree(app):
    """A single-job advance (hot statements) and a batch advance (SQLAlchemy)
    leave the same counts, attempts and dependencies behind."""
    b = lifecycle.create_board("two-ways", [0, 60, 0])
    lifecycle.push_jobs(b.id, _jobs(4))
    lifecycle.push_jobs(b.id, [NewJob("after", "{}", 0)],
                        {"after": lifecycle.Extras(after=("0", "1"))})
    got = lifecycle.claim(b.id, 0, 4, worker="w", lease=True)
    by_key = {j.key: j for j in got}
    assert lifecycle.advance(b.id, [Advance(by_key["0"].attempt_id)]) == \
        {"advanced": 1, "cancelled": 0}
    assert lifecycle.advance(b.id, [Advance(by_key[k].attempt_id) for k in "123"]) == \
        {"advanced": 3, "cancelled": 0}
    # both upstream jobs done: "after" is claimable, and no attempt is open
    assert [j.key for j in lifecycle.claim(b.id, 0, 5, worker="w", lease=True)] == ["after"]
    with db.engine.connect() as conn:
        open_attempts = conn.exec_driver_sql(
            "SELECT count(*) FROM attempts WHERE ended_at IS NULL").scalar()
        counts = dict(conn.exec_driver_sql(
            "SELECT stage, n FROM stage_counts WHERE state = 'active' AND n != 0").all())
    assert open_attempts == 1 and counts == {1: 1, 2: 4}


def test_postgresql_claims_and_reports_do_not_wait_for_the_disk(postgres_app):
    """Claims, reports and heartbeats commit without waiting for the WAL
    flush (SQLite's synchronous=NORMAL guarantee); every other write,
    pushes first, waits for it."""
    def setting(durable: bool) -> str:
        with write_transaction(db.engine, durable=durable) as conn:
            return conn.exec_driver_sql("SHOW synchronous_commit").scalar()

    assert setting(durable=True) == "on"
    assert setting(durable=False) == "off"
    assert setting(durable=True) == "on"  # SET LOCAL: gone with its transaction


def test_a_report_sees_the_dependencies_of_a_push_that_held_its_job(postgres_app):
    """A workflow push locks the upstream jobs it reads (FOR SHARE) while it
    writes their new downstream jobs; a report of such a job waits for that
    push and must then release the job it added (it read "no downstream
    jobs" from a snapshot older than the push, and left it blocked forever)."""
    import threading

    b = lifecycle.ensure_board(11)
    lifecycle.set_lifetimes_if_unset(b.id, [60, 60, 0])
    lifecycle.push(b.id, [NewJob("up", "{}", 0)])
    up = lifecycle.claim(b.id, 0)[0]
    with db.engine.connect() as push:  # the push, by hand, held open
        push.exec_driver_sql("SELECT id FROM jobs WHERE id = %s FOR SHARE", (up.id,))
        down = push.exec_driver_sql(
            "INSERT INTO jobs (board_id, key, payload, stage, entered_at, flagged, attempts, "
            "state, priority, waiting_on) VALUES (%s, 'down', '{}', 0, 0, false, 0, 'blocked', "
            "0, 1) RETURNING id", (b.id,)).scalar()
        push.exec_driver_sql("INSERT INTO dependencies (upstream_id, job_id, satisfied) "
                             "VALUES (%s, %s, false)", (up.id, down))
        app = postgres_app
        errors: list[BaseException] = []

        def report() -> None:
            try:
                with app.app_context():
                    lifecycle.update_job(b.id, "up", 2)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        reporter = threading.Thread(target=report)
        reporter.start()
        reporter.join(1.0)
        assert reporter.is_alive()  # waiting for the push's lock
        push.commit()
    reporter.join(10)
    assert not errors, errors
    with db.engine.connect() as conn:
        state = conn.exec_driver_sql("SELECT state, waiting_on FROM jobs WHERE id = %s",
                                     (down,)).one()
    assert tuple(state) == ("active", 0)
