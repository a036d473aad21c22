"""Slurm back-end: a batch script per allocation, submitted with ``sbatch``;
states from ``squeue`` (and ``scontrol`` once a job left the queue's view:
many sites, and a Slurm without slurmdbd, have no ``sacct``); ``scancel``.

The board's token never goes into the script: sbatch passes the pool's
environment (``--export=ALL``), where JOBSERVER_TOKEN is set, to the job.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from typing import Sequence

from .allocation import Allocation, AllocationSpec, Refused, State, slurm_time

log = logging.getLogger(__name__)

TIMEOUT = 60.0  # seconds a Slurm command may take
PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
           "RESV_DEL_HOLD", "STOPPED"}
RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESIZING"}
# anything else (COMPLETED, CANCELLED, TIMEOUT, FAILED, NODE_FAIL, PREEMPTED,
# OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, ...) has ended


def state_of(slurm_state: str, reason: str | None) -> tuple[State, str | None]:
    """The registry's state and reason for a Slurm job state and reason."""
    word = slurm_state.split()[0].rstrip("+").upper() if slurm_state else "UNKNOWN"
    reason = None if reason in (None, "", "None", "(null)") else reason
    if word in PENDING:
        return State.PENDING, reason or (None if word == "PENDING" else word)
    if word in RUNNING:
        return State.RUNNING, None if word == "RUNNING" else word
    return State.ENDED, word + (f" ({reason})" if reason else "")


def batch_script(spec: AllocationSpec) -> str:
    """The script sbatch gets: #SBATCH lines from the options, then one
    `jobworker run` per node (srun when there are several)."""
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={spec.job_name}",
             f"#SBATCH --nodes={spec.nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --output={spec.output_dir.resolve() / (spec.job_name + '-%j.out')}",
             "#SBATCH --export=ALL"]
    if spec.time_s is not None:
        lines.append(f"#SBATCH --time={slurm_time(spec.time_s)}")
    if spec.cpus is not None:
        lines.append(f"#SBATCH --cpus-per-task={spec.cpus}")
    for flag, value in (("mem", spec.mem), ("partition", spec.partition),
                        ("account", spec.account), ("qos", spec.qos)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {arg}" for arg in spec.sbatch_args]
    run = spec.worker_line()
    if spec.nodes > 1:
        run = f"srun --nodes={spec.nodes} --ntasks-per-node=1 {run}"
    lines += [
        "",
        f"# jobworker pool: board {spec.board}, stage {spec.stage}: {spec.workers_per_node} "
        f"worker{'' if spec.workers_per_node == 1 else 's'} per node,",
        f"# leaving after {spec.idle_exit:g} s without work.  The board's token comes "
        "through the environment",
        "# (JOBSERVER_TOKEN, exported by sbatch from the pool's): it is not in this file.",
        "set -eu",
        f"export JOBSERVER_URL={shlex.quote(spec.url)}",
        f"export JOBSERVER_BOARD={shlex.quote(spec.board)}",
        ': "${JOBSERVER_TOKEN:?not in the environment: submit with sbatch --export=ALL '
        'from a shell where JOBSERVER_TOKEN is set}"',
        f"exec {run}",
        ""]
    return "\n".join(lines)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def _errors(text: str) -> str:
    """Slurm's error lines, without the program's prefix, on one line."""
    lines = [re.sub(r"^\w+: (error: )?", "", ln.strip()) for ln in text.splitlines()
             if ln.strip()]
    return "; ".join(lines)[-1000:] or "no message"


class SlurmScheduler:
    name = "slurm"

    def __init__(self, spec: AllocationSpec, token: str) -> None:
        self.spec = spec
        self.token = token

    def describe(self) -> str:
        return batch_script(self.spec)

    def submit(self) -> Allocation:
        env = dict(os.environ, JOBSERVER_TOKEN=self.token)
        try:
            got = _run(["sbatch", "--parsable"], input=batch_script(self.spec), env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Refused(f"sbatch did not answer: {exc}") from None
        if got.returncode != 0:
            raise Refused(_errors(got.stderr or got.stdout))
        job_id = got.stdout.strip().split(";")[0]
        if not re.fullmatch(r"[0-9_]+", job_id):
            raise Refused(f"sbatch answered {got.stdout.strip()[:200]!r}, not a job id")
        return Allocation(job_id)

    def poll(self, allocations: Sequence[Allocation]) -> None:
        live = {a.id: a for a in allocations if a.live}
        if not live:
            return
        try:
            got = _run(["squeue", "-h", "--states=all", "-j", ",".join(live),
                        "-o", "%i|%T|%r"])
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("squeue did not answer: %s", exc)
            return
        if got.returncode != 0 and "Invalid job id" not in got.stderr:
            log.warning("squeue failed: %s", _errors(got.stderr))
            return
        seen = set()
        for line in got.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in live:
                seen.add(parts[0])
                live[parts[0]].update(*state_of(parts[1], parts[2]))
        for job_id in live.keys() - seen:  # out of squeue's sight: ask scontrol
            live[job_id].update(*self._scontrol_state(job_id))

    def _scontrol_state(self, job_id: str) -> tuple[State, str | None]:
        try:
            got = _run(["scontrol", "show", "job", job_id])
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("scontrol did not answer: %s", exc)
            return State.ENDED, "unknown (scontrol did not answer)"
        state = re.search(r"\bJobState=(\S+)", got.stdout)
        reason = re.search(r"\bReason=(\S+)", got.stdout)
        if got.returncode != 0 or state is None:
            return State.ENDED, "gone from the scheduler's records"
        return state_of(state.group(1), reason.group(1) if reason else None)

    def cancel(self, allocation: Allocation) -> None:
        try:
            got = _run(["scancel", allocation.id])
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("scancel %s did not answer: %s", allocation.id, exc)
            return
        if got.returncode != 0:
            log.warning("scancel %s: %s", allocation.id, _errors(got.stderr))

    def adopt(self) -> list[Allocation]:
        try:
            got = _run(["squeue", "-h", "--me", f"--name={self.spec.job_name}",
                        "-o", "%i|%T|%r"])
        except (OSError, subprocess.TimeoutExpired):
            return []
        found = []
        for line in got.stdout.splitlines() if got.returncode == 0 else []:
            parts = line.strip().split("|")
            if len(parts) == 3:
                state, reason = state_of(parts[1], parts[2])
                if state is not State.ENDED:
                    found.append(Allocation(parts[0], state, reason, adopted=True))
        return found

    def stop(self, allocations: Sequence[Allocation]) -> None:
        """Queued allocations are cancelled; running ones are left to finish
        their jobs (their workers leave when idle)."""
        for a in allocations:
            if a.state is State.PENDING:
                self.cancel(a)
                a.update(State.ENDED, "CANCELLED (the pool stopped)")
