"""`jobworker pool` without a scheduler: the policy, time limits, Slurm's
states and batch script, the options' mistakes, and the pool's loop driven
by a fake scheduler and a fake board."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from worker_client.cli import main
from worker_client.pools import (Allocation, AllocationSpec, Limits, Refusals, Refused, State,
                                 Work, decide, parse_time)
from worker_client.pools.allocation import slurm_time
from worker_client.pools.policy import wanted
from worker_client.pools.pool import Pool, work_at
from worker_client.pools.slurm import batch_script, state_of


def alloc(i: int, state: State = State.RUNNING, at: float = 0.0) -> Allocation:
    a = Allocation(str(i), state, submitted=at)
    return a


# ------------------------------------------------------------------ policy


def test_as_many_allocations_as_the_waiting_work_needs_within_the_maximum():
    limits = Limits(max_allocations=2, slots=2)
    assert wanted(Work(waiting=200, running=0), limits) == 2
    assert wanted(Work(waiting=1, running=0), limits) == 1  # one job: one allocation
    assert wanted(Work(waiting=1, running=2), limits) == 2
    assert wanted(Work(waiting=0, running=4), limits) == 0  # nothing waits: no new one
    assert decide(Work(200, 0), [], limits).submit == 2
    assert decide(Work(200, 0), [alloc(1)], limits).submit == 1
    assert decide(Work(200, 0), [alloc(1), alloc(2)], limits).submit == 0
    assert decide(Work(3, 0), [], Limits(10, slots=2)).submit == 2  # never more than needed


def test_ended_allocations_do_not_count_and_submitting_can_be_paused():
    limits = Limits(max_allocations=2, slots=1)
    ended = alloc(1, State.ENDED)
    assert decide(Work(5, 0), [ended], limits).submit == 2
    assert decide(Work(5, 0), [ended], limits, submitting=False).submit == 0


def test_queued_allocations_nothing_is_left_for_are_cancelled_newest_first():
    limits = Limits(max_allocations=3, slots=2)
    running, old, new = alloc(1), alloc(2, State.PENDING, 1.0), alloc(3, State.PENDING, 2.0)
    d = decide(Work(waiting=0, running=2), [running, old, new], limits)
    assert d.cancel == [new, old] and d.submit == 0 and not d.finished
    d = decide(Work(waiting=1, running=2), [running, old, new], limits)  # needs 2
    assert d.cancel == [new]
    # running allocations are never cancelled: their workers leave when idle
    assert decide(Work(0, 0), [alloc(1), alloc(2)], limits).cancel == []


def test_finished_when_nothing_is_left_and_no_allocation_either():
    limits = Limits(max_allocations=2, slots=1)
    assert decide(Work(0, 0), [], limits).finished
    assert decide(Work(0, 0), [alloc(1, State.ENDED)], limits).finished
    assert not decide(Work(0, 0), [alloc(1)], limits).finished  # its workers still leave
    assert not decide(Work(0, 1), [], limits).finished  # a job still runs (may come back)
    assert not decide(Work(0, 0, coming=5), [], limits).finished  # blocked work will come
    assert not decide(Work(0, 0), [], limits, continuous=True).finished
    # the last queued allocation is cancelled and the pool is finished at once
    assert decide(Work(0, 0), [alloc(1, State.PENDING)], limits).finished


def test_the_minimum_is_kept_while_work_is_left_even_if_not_claimable_yet():
    limits = Limits(max_allocations=4, min_allocations=2, slots=1)
    assert decide(Work(0, 0, coming=10), [], limits).submit == 2
    assert decide(Work(0, 0), [], limits).submit == 0  # nothing left: no minimum
    assert decide(Work(0, 0, coming=1), [alloc(1, State.PENDING), alloc(2, State.PENDING)],
                  limits).cancel == []


def test_refusals_back_off_and_stop_after_three_in_a_row():
    r = Refusals()
    assert r.may_submit(0)
    r.refused("Invalid partition name specified", now=100)
    assert not r.may_submit(101) and r.may_submit(103)
    r.refused("again", now=103)
    assert not r.may_submit(108) and r.may_submit(109)  # 3 s, then 6 s
    r.accepted()
    assert r.in_a_row == 0 and r.total == 2
    for _ in range(3):
        r.refused("no", now=200)
    assert r.stopped and not r.may_submit(10_000)


def test_the_board_as_a_pool_sees_it():
    status = {"counts": {"0": 5, "1": 2, "2": 3, "4": 7}, "blocked": 4,
              "progress": {"waiting": 8, "running": 2}, "max_running": None}
    assert work_at(status, 2) == Work(waiting=3, running=0, coming=5 + 2 + 4, done=7)
    assert work_at(status, 0) == Work(waiting=5, running=2, coming=4, done=10)
    # blocked jobs behind failures only (nothing moves) are not coming
    idle = {"counts": {"2": 9}, "blocked": 4, "progress": {"waiting": 0, "running": 0}}
    assert work_at(idle, 0) == Work(0, 0, 0, 9)
    # a full running cap: waiting jobs are not claimable now, but still coming
    capped = {"counts": {"0": 10, "1": 3}, "progress": {"waiting": 10, "running": 3},
              "max_running": 4}
    assert work_at(capped, 0) == Work(waiting=1, running=3, coming=9, done=0)


# ------------------------------------------------------------ time limits


@pytest.mark.parametrize("text,seconds", [
    ("00:30:00", 1800), ("1:00:00", 3600), ("90", 5400), ("10:30", 630),
    ("1-00", 86400), ("2-03:04", 2 * 86400 + 3 * 3600 + 240), ("1-00:00:01", 86401)])
def test_slurm_time_limits(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "00:61:00", "0", "00:00:00", "1:2:3:4", "-5"])
def test_bad_time_limits_say_which_forms_work(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_slurm_time_is_written_back_in_slurm_form():
    assert slurm_time(1800) == "00:30:00"
    assert slurm_time(86400 + 61) == "1-00:01:01"


# ----------------------------------------------------------------- Slurm


@pytest.mark.parametrize("slurm,ours", [
    ("PENDING", (State.PENDING, None)),
    ("CONFIGURING", (State.PENDING, "CONFIGURING")),
    ("RUNNING", (State.RUNNING, None)),
    ("COMPLETING", (State.RUNNING, "COMPLETING")),  # still holds its node
    ("COMPLETED", (State.ENDED, "COMPLETED")),
    ("CANCELLED+", (State.ENDED, "CANCELLED")),
    ("TIMEOUT", (State.ENDED, "TIMEOUT")),
    ("NODE_FAIL", (State.ENDED, "NODE_FAIL"))])
def test_slurm_states(slurm, ours):
    assert state_of(slurm, "None") == ours


def test_a_pending_allocation_carries_slurms_reason():
    assert state_of("PENDING", "Resources") == (State.PENDING, "Resources")
    assert state_of("FAILED", "NonZeroExitCode") == (State.ENDED, "FAILED (NonZeroExitCode)")


def spec(**kw) -> AllocationSpec:
    base = dict(url="http://login:5000", board="sims", stage=0, command=["./sim", "{key}"],
                workers_per_node=4, time_s=3600, worker=["/opt/venv/bin/jobworker"],
                output_dir=Path("/scratch/logs"))
    base.update(kw)
    return AllocationSpec(**base)


def test_the_batch_script_runs_one_worker_and_never_holds_the_token():
    script = batch_script(spec(cpus=4, mem="8G", partition="short", account="proj1",
                               qos="normal", sbatch_args=["--constraint=haswell"]))
    assert script.startswith("#!/bin/bash\n")
    for line in ["#SBATCH --job-name=jobworker-sims-s0", "#SBATCH --nodes=1",
                 "#SBATCH --time=01:00:00", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
                 "#SBATCH --partition=short", "#SBATCH --account=proj1", "#SBATCH --qos=normal",
                 "#SBATCH --constraint=haswell", "#SBATCH --export=ALL",
                 "#SBATCH --output=/scratch/logs/jobworker-sims-s0-%j.out",
                 "export JOBSERVER_URL=http://login:5000", "export JOBSERVER_BOARD=sims",
                 "exec /opt/venv/bin/jobworker run --stage 0 --parallel 4 --idle-exit 60 "
                 "-- ./sim '{key}'"]:
        assert line in script.splitlines(), line
    assert "JOBSERVER_TOKEN=" not in script  # only checked for: `${JOBSERVER_TOKEN:?...}`
    assert "srun" not in script


def test_several_nodes_start_one_worker_each_through_srun():
    script = batch_script(spec(nodes=3, command=[]))
    assert ("exec srun --nodes=3 --ntasks-per-node=1 /opt/venv/bin/jobworker run --stage 0 "
            "--parallel 4 --idle-exit 60") in script.splitlines()


# ------------------------------------------------------------------ the CLI


def pool_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["--url", "http://127.0.0.1:9", "--board", "b", "--token",
                                     "secret-token", "pool", *args], env=env)


@pytest.mark.parametrize("args,message", [
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "2", "--time", "2h"],
     "--time '2h' is not a time limit: give HH:MM:SS"),
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "2"],
     "--time is required with --scheduler slurm"),
    (["--scheduler", "local", "--stage", "0", "--max-allocations", "2", "--partition", "p"],
     "--partition: only with --scheduler slurm"),
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "2", "--min-allocations",
      "3", "--time", "10"], "--min-allocations 3 is more than --max-allocations 2"),
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "2", "--time", "10",
      "--mem", "lots"], "--mem 'lots': give a size such as 4G"),
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "2", "--time", "10",
      "--sbatch-arg", "constraint=gpu"], "one sbatch option on one line"),
    (["--scheduler", "slurm", "--stage", "0", "--max-allocations", "0", "--time", "10"],
     "Invalid value for '--max-allocations'")])
def test_mistakes_are_one_line_and_exit_2(args, message):
    r = pool_cli(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_dry_run_prints_the_script_without_the_token_and_contacts_nobody(tmp_path):
    r = pool_cli("--scheduler", "slurm", "--stage", "0", "--max-allocations", "2", "--time",
                 "00:10:00", "--cpus", "1", "--output-dir", str(tmp_path), "--dry-run", "--",
                 "sh", "-c", "echo {key}")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("#!/bin/bash\n")
    assert "secret-token" not in r.output
    assert "sh -c 'echo {key}'" in r.output
    local = pool_cli("--scheduler", "local", "--stage", "0", "--max-allocations", "2",
                     "--dry-run", "--", "true")
    assert local.exit_code == 0 and "secret-token" not in local.output
    assert "JOBSERVER_ALLOCATION=" in local.output and "run --stage 0" in local.output


def test_help_explains_every_option():
    r = CliRunner().invoke(main, ["pool", "--help"])
    assert r.exit_code == 0
    for option in ("--scheduler", "--stage", "--max-allocations", "--min-allocations",
                   "--workers-per-allocation", "--nodes", "--time", "--cpus", "--mem",
                   "--partition", "--account", "--qos", "--sbatch-arg", "--idle-exit",
                   "--continuous", "--dry-run", "--poll", "--output-dir", "core hours",
                   "Exit status"):
        assert option in r.output, option


def test_a_server_that_is_down_is_one_line_within_seconds():
    r = pool_cli("--scheduler", "local", "--stage", "0", "--max-allocations", "2", "--", "true")
    assert r.exit_code == 1
    assert "cannot reach the server at http://127.0.0.1:9" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1


# ------------------------------------------------------------- the loop


class FakeBoard:
    """A board whose jobs are done by the allocations that run: each
    running allocation finishes ``per_poll`` jobs per look."""

    def __init__(self, jobs: int, per_poll: int = 10) -> None:
        self.waiting, self.done, self.per_poll = jobs, 0, per_poll
        self.reports: list[tuple[str, str, dict]] = []
        self.scheduler: FakeScheduler | None = None

    def status(self):
        running = sum(a.live and a.state is State.RUNNING for a in self.scheduler.made)
        n = min(self.waiting, running * self.per_poll)
        self.waiting -= n
        self.done += n
        return {"counts": {"0": self.waiting, "2": self.done}, "blocked": 0,
                "progress": {"waiting": self.waiting, "running": 0}, "max_running": None}

    def allocations(self):
        return [{"id": a.id, "workers": 2 if a.state is State.RUNNING else 0}
                for a in self.scheduler.made]

    def report_allocation(self, allocation, state, **fields):
        self.reports.append((allocation, state, fields))
        return {}


class FakeScheduler:
    """Allocations start one look after submission and end once the board
    is empty; ``refuse`` submissions are refused first."""
    name = "slurm"

    def __init__(self, board: FakeBoard, refuse: int = 0) -> None:
        self.board, self.refuse = board, refuse
        self.made: list[Allocation] = []
        self.cancelled: list[str] = []
        self.peak = 0
        board.scheduler = self

    def describe(self):
        return "#!/bin/sh\n"

    def submit(self):
        if self.refuse:
            self.refuse -= 1
            raise Refused("Batch job submission failed: Invalid partition name specified")
        a = Allocation(str(100 + len(self.made)))
        self.made.append(a)
        self.peak = max(self.peak, sum(x.live for x in self.made))
        return a

    def poll(self, allocations):
        for a in allocations:
            if a.state is State.PENDING:
                a.update(State.RUNNING, None)
            elif a.state is State.RUNNING and self.board.waiting == 0:
                a.update(State.ENDED, "COMPLETED")

    def cancel(self, a):
        self.cancelled.append(a.id)

    def adopt(self):
        return []

    def stop(self, allocations):
        pass


def fake_pool(board, scheduler, max_allocations=2, **kw) -> Pool:
    s = AllocationSpec(url="http://x", board="b", stage=0, workers_per_node=2)
    return Pool(board, scheduler, s, Limits(max_allocations, slots=2), poll=0.01, tty=False,
                **kw)


def test_the_loop_drains_the_board_within_the_maximum_and_reports_every_state():
    board = FakeBoard(200)
    scheduler = FakeScheduler(board)
    pool = fake_pool(board, scheduler)
    assert pool.run() == 0
    assert board.done == 200
    assert scheduler.peak == 2 and pool.figures.peak == 2
    assert not any(a.live for a in scheduler.made)
    first = {a: f for a, s, f in board.reports if "scheduler" in f}
    assert set(first) == {a.id for a in scheduler.made}
    assert all(f["scheduler"] == "slurm" and f["workers_per_node"] == 2
               for f in first.values())
    states = {a: [s for x, s, _ in board.reports if x == a] for a in first}
    assert all(s == ["pending", "running", "ended"] for s in states.values()), states
    assert "allocations submitted (at most 2 at once)" in pool.summary()
    assert "the last allocation gone" in pool.summary()


def test_refused_submissions_stop_the_pool_after_three_with_slurms_message(caplog):
    board = FakeBoard(10)
    scheduler = FakeScheduler(board, refuse=10)
    pool = fake_pool(board, scheduler)
    pool.refusals.pause = 0.01
    with caplog.at_level(logging.INFO):
        assert pool.run() == 1
    text = caplog.text
    assert text.count("sbatch refused the allocation: Batch job submission failed: Invalid "
                      "partition name specified") == 3
    assert "(1 of 3 in a row; trying again in" in text
    assert "stopped submitting: the scheduler refused 3 submissions in a row" in text
    assert scheduler.made == []


def test_a_refusal_then_an_accepted_submission_carries_on():
    board = FakeBoard(50)
    scheduler = FakeScheduler(board, refuse=2)
    pool = fake_pool(board, scheduler)
    pool.refusals.pause = 0.01
    assert pool.run() == 0
    assert board.done == 50 and pool.figures.refused == 2


def test_an_older_server_without_allocations_is_not_asked_again(caplog):
    from worker_client.client import ApiError

    class OldBoard(FakeBoard):
        def report_allocation(self, *a, **kw):
            self.calls = getattr(self, "calls", 0) + 1
            raise ApiError(404, "Not Found", "The requested URL was not found on the server.")

    board = OldBoard(20)
    pool = fake_pool(board, FakeScheduler(board))
    assert pool.run() == 0
    assert board.calls == 1 and "the server does not keep allocations" in caplog.text


def test_the_status_line_and_summary_name_failed_jobs():
    board = FakeBoard(0)
    pool = fake_pool(board, FakeScheduler(board))
    pool.work, pool.failed = Work(waiting=3, running=2, coming=1, done=7), 4
    pool.allocations = [alloc(1, State.PENDING), alloc(2)]
    assert pool.line() == ("allocations 1 pending, 1 running (max 2), workers 0 | jobs 3 "
                           "waiting, 2 running, 7 done, 1 coming, 4 failed")
    assert pool.summary().startswith("board b stage 0: 7 jobs past it (4 failed on the board: "
                                     "jobworker status); 0 allocations submitted")
