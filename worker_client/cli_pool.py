"""`jobworker pool`: workers in batch allocations (Slurm, or local
processes) as the board's work needs them.  Registered on the `jobworker`
group by :mod:`.cli`; the policy and the back-ends are in :mod:`.pools`."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import click

from .cli import BadUsage, Ctx, _fail_cleanly, main

SLURM_ONLY = ("cpus", "mem", "partition", "account", "qos", "sbatch_arg")
MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)

POOL_EPILOG = """\b
What it costs: an allocation holds NODES x CPUS cores from the moment it
starts until its workers leave (at most --time).  Idle workers leave after
--idle-exit seconds, so a drained board costs at most
  allocations x nodes x cpus x idle-exit / 3600 core hours
after its last job, and each allocation at most nodes x cpus x time.

\b
Examples:
  jobworker pool --scheduler slurm --stage 0 --max-allocations 10 \\
      --workers-per-allocation 32 --cpus 32 --time 02:00:00 -- ./simulate {key}
  jobworker pool --scheduler slurm --stage 0 --max-allocations 2 --time 10 --dry-run
  jobworker pool --scheduler local --stage 0 --max-allocations 4 -- ./simulate {key}

\b
Exit status:
  0  nothing left at the stage and no allocation left (--dry-run: printed)
  1  an error: the scheduler refused 3 submissions in a row, the server
     unreachable at the start, a signal stopped the pool
  2  bad usage
"""


def _check_slurm_only(scheduler: str, given: dict[str, object]) -> None:
    if scheduler == "slurm":
        return
    used = [f"--{name.replace('_', '-')}" for name in SLURM_ONLY if given.get(name)]
    if used:
        raise BadUsage(f"{', '.join(used)}: only with --scheduler slurm")


@main.command(context_settings={"ignore_unknown_options": True}, epilog=POOL_EPILOG)
@click.option("--scheduler", type=click.Choice(["slurm", "local"]), required=True,
              help="slurm: allocations through sbatch (run where sbatch works, a login node); "
                   "local: processes on this machine.")
@click.option("--stage", type=click.IntRange(0), required=True,
              help="The stage whose jobs the workers claim (as `jobworker run --stage`).")
@click.option("--max-allocations", type=click.IntRange(1), required=True, metavar="N",
              help="Never more than N allocations at once (queued or running).")
@click.option("--min-allocations", type=click.IntRange(0), default=0, show_default=True,
              metavar="M",
              help="Keep at least M allocations while the stage has work left, also work "
                   "not claimable yet (blocked, at earlier stages), so workers are ready "
                   "for it; they cost core hours while they wait.")
@click.option("--workers-per-allocation", type=click.IntRange(1), default=1, show_default=True,
              metavar="W", help="Commands run at once per node (`jobworker run --parallel W`).")
@click.option("--nodes", type=click.IntRange(1), default=1, show_default=True, metavar="K",
              help="Nodes per allocation; one worker per node (srun when K > 1).")
@click.option("--time", "time_limit", default=None, metavar="HH:MM:SS",
              help="Each allocation's time limit (sbatch --time; also D-HH:MM:SS, MM); "
                   "required with slurm; local: the workers are stopped then.  Jobs running "
                   "at the limit are given back and run again elsewhere.")
@click.option("--cpus", type=click.IntRange(1), default=None, metavar="C",
              help="CPUs per node for its worker and its W commands (sbatch "
                   "--cpus-per-task) [default: the partition's].")
@click.option("--mem", default=None, metavar="M",
              help="Memory per node (sbatch --mem: e.g. 4G, 500M) [default: the partition's].")
@click.option("--partition", default=None, metavar="P", help="sbatch --partition.")
@click.option("--account", default=None, metavar="A", help="sbatch --account (who pays).")
@click.option("--qos", default=None, metavar="Q", help="sbatch --qos.")
@click.option("--sbatch-arg", multiple=True, metavar="ARG",
              help="One more #SBATCH line, e.g. --sbatch-arg=--constraint=haswell "
                   "(repeatable).")
@click.option("--idle-exit", type=click.FloatRange(0), default=60.0, show_default=True,
              metavar="SECONDS",
              help="Workers leave after SECONDS without work, freeing their allocation.")
@click.option("--continuous", is_flag=True,
              help="Keep watching the board when nothing is left (new pushes get "
                   "allocations); stop with Ctrl-C.")
@click.option("--poll", type=click.FloatRange(0.5), default=10.0, show_default=True,
              metavar="SECONDS", help="Seconds between two looks at the board and the queue.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, metavar="DIR",
              help="Where the allocations' output files go "
                   "(jobworker-<board>-s<stage>-<id>.out).")
@click.option("--dry-run", is_flag=True,
              help="Print the batch script (local: the worker command) a submission would "
                   "use, and submit nothing.  The token is never in it: sbatch passes it in "
                   "the environment.")
@click.argument("command", nargs=-1, required=False, type=click.UNPROCESSED)
@click.pass_obj
@_fail_cleanly
def pool(obj: Ctx, scheduler: str, stage: int, max_allocations: int, min_allocations: int,
         workers_per_allocation: int, nodes: int, time_limit: str | None, cpus: int | None,
         mem: str | None, partition: str | None, account: str | None, qos: str | None,
         sbatch_arg: tuple[str, ...], idle_exit: float, continuous: bool, poll: float,
         output_dir: Path, dry_run: bool, command: tuple[str, ...]) -> None:
    """Start workers in batch allocations while the board has jobs at
    --stage: never more than --max-allocations at once, never more than the
    waiting jobs need.  Each allocation runs `jobworker run --stage S
    --parallel W --idle-exit SECONDS -- COMMAND ...` on each of its nodes
    (without COMMAND, the jobs' own commands).  Allocations still queued
    when nothing is left for them are cancelled.  It exits when the stage
    has nothing left (waiting, running, or on its way from earlier stages
    or blocked) and its allocations are gone; with --continuous it keeps
    watching.  A refused submission is reported with the scheduler's
    message and retried; after 3 refusals in a row the pool submits no
    more and exits 1.  Each allocation's state (pending, running, ended)
    goes to the server, where the board's page shows it; the workers
    report their allocation with their heartbeats.  Run it where it can
    stay (a login node in tmux/screen): its allocations outlive it, and a
    new pool for the same board and stage counts them.
    """
    from .pools import AllocationSpec, Limits, parse_time
    from .pools.local import LocalScheduler
    from .pools.pool import Pool
    from .pools.slurm import SlurmScheduler

    _check_slurm_only(scheduler, {"cpus": cpus, "mem": mem, "partition": partition,
                                  "account": account, "qos": qos, "sbatch_arg": sbatch_arg})
    if min_allocations > max_allocations:
        raise BadUsage(f"--min-allocations {min_allocations} is more than --max-allocations "
                       f"{max_allocations}")
    time_s = None
    if time_limit is not None:
        try:
            time_s = parse_time(time_limit)
        except ValueError as exc:
            raise BadUsage(f"--time {exc}") from None
    elif scheduler == "slurm":
        raise BadUsage("--time is required with --scheduler slurm (e.g. --time 01:00:00): "
                       "an allocation's time limit, what it may cost")
    if mem is not None and not MEM.match(mem):
        raise BadUsage(f"--mem {mem!r}: give a size such as 4G, 500M or 2000 (megabytes)")
    for arg in sbatch_arg:
        if not arg.startswith("-") or "\n" in arg or "\r" in arg:
            raise BadUsage(f"--sbatch-arg {arg!r}: one sbatch option on one line, e.g. "
                           f"--sbatch-arg=--constraint=gpu")
    if not obj.url or not obj.board:
        raise click.UsageError("missing " + ", ".join(
            n for n, v in (("--url/JOBSERVER_URL", obj.url), ("--board/JOBSERVER_BOARD",
                                                              obj.board)) if not v))
    spec = AllocationSpec(url=obj.checked_url(), board=obj.board, stage=stage,
                          command=list(command), workers_per_node=workers_per_allocation,
                          nodes=nodes, time_s=time_s, cpus=cpus, mem=mem, partition=partition,
                          account=account, qos=qos, sbatch_args=list(sbatch_arg),
                          idle_exit=idle_exit, output_dir=output_dir)
    back_end = SlurmScheduler if scheduler == "slurm" else LocalScheduler
    if dry_run:
        click.echo(back_end(spec, obj.token or "").describe(), nl=False)
        if scheduler == "slurm":
            click.echo("(dry run: nothing submitted; the pool submits this with `sbatch "
                       "--parsable`, JOBSERVER_TOKEN in its environment)", err=True)
        return
    if scheduler == "slurm":
        missing = [p for p in ("sbatch", "squeue", "scontrol", "scancel") if not shutil.which(p)]
        if missing:
            raise click.ClickException(f"{', '.join(missing)} not found: run the pool where "
                                       f"Slurm's commands work (a login node)")
    brisk = obj.client()  # a person typed this: a wrong URL or token fails in seconds
    stages = [s["stage"] for s in brisk.status()["stages"]]
    if stage % 2 or stage >= max(stages, default=0):
        raise BadUsage(f"--stage {stage}: workers claim at an even stage before the board's "
                       f"last ({max(stages, default=0)})")
    output_dir.mkdir(parents=True, exist_ok=True)
    the_pool = Pool(obj.client(patient=True), back_end(spec, obj.token or ""), spec,
                    Limits(max_allocations, min_allocations, spec.slots), continuous, poll)
    the_pool.install_signals()
    code = the_pool.run()
    click.echo(the_pool.summary(), err=True)
    sys.exit(code)

