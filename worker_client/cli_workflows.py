"""`jobworker` commands for workflows: submit a command as a job (with its
dependencies, priority and attempts), retry failed or cancelled jobs, change
priorities.  Registered on the `jobworker` group by :mod:`.cli`."""
from __future__ import annotations

import os
import re
import secrets
import time
from typing import Any

import click

from .cli import BadUsage, Ctx, _fail_cleanly, main

INT32 = (-2 ** 31, 2 ** 31 - 1)  # the range of a priority
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_key(argv: list[str]) -> str:
    """A readable, unique key for a submitted command: its program's name,
    the time and a short random suffix, e.g. ``simulate-20250301-141502-9f3a``."""
    name = _UNSAFE.sub("_", os.path.basename(argv[0].rstrip("/")) or "job").strip("_")[:40]
    return f"{name or 'job'}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def command_payload(argv: list[str], cwd: str | None, env_names: tuple[str, ...]) -> dict[str, Any]:
    """The payload of a command job: {"command": argv, "cwd"?, "env"?}.
    ``env_names``: NAME (its value here and now) or NAME=VALUE."""
    payload: dict[str, Any] = {"command": list(argv)}
    if cwd is not None:
        payload["cwd"] = cwd
    env: dict[str, str] = {}
    for item in env_names:
        name, sep, value = item.partition("=")
        if not ENV_NAME.match(name):
            raise BadUsage(f"--env {item}: expected NAME or NAME=VALUE (NAME: letters, digits, "
                           f"underscores)")
        if not sep:
            if name not in os.environ:
                raise BadUsage(f"--env {name}: not set here (give NAME=VALUE to set it)")
            value = os.environ[name]
        env[name] = value
    if env:
        payload["env"] = env
    return payload


SUBMIT_EPILOG = """\b
Examples:
  jobworker submit -- ./preprocess.sh input.csv            prints its key
  A=$(jobworker submit --key prep -- ./prep.sh)
  jobworker submit --after prep --priority 10 --cwd --env OMP_NUM_THREADS -- ./sim --n 4
  jobworker run --stage 0                                  runs the jobs' own commands
"""


@main.command(context_settings={"ignore_unknown_options": True}, epilog=SUBMIT_EPILOG)
@click.option("--key", default=None, help="The job's key [default: the command's name, the "
                                          "time and a random suffix].")
@click.option("--after", "after", multiple=True, metavar="KEY",
              help="Run only once the job KEY is done (repeat for several); KEY must be on "
                   "the board.")
@click.option("--priority", type=click.IntRange(*INT32), default=None,
              help="Claims take higher priorities first [default: 0].")
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=None,
              help="Attempts at each stage [default: the board's].")
@click.option("--cwd", "record_cwd", is_flag=True,
              help="Run it in the current directory (recorded now; it must exist on the "
                   "worker's host) [default: the worker's].")
@click.option("--env", "env_names", multiple=True, metavar="NAME[=VALUE]",
              help="Set this variable for the command: its value here and now, or VALUE "
                   "(repeat for several); the rest is the worker's environment.")
@click.option("--stage", type=click.IntRange(0), default=0, show_default=True,
              help="The stage it waits at (the one `jobworker run --stage` claims).")
@click.option("--strict", is_flag=True,
              help="Refuse (exit 1) if KEY is on the board with another command or "
                   "dependencies [default: keep what is there and warn].")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
@_fail_cleanly
def submit(obj: Ctx, key: str | None, after: tuple[str, ...], priority: int | None,
           max_attempts: int | None, record_cwd: bool, env_names: tuple[str, ...], stage: int,
           strict: bool, command: tuple[str, ...]) -> None:
    """Push one job whose payload is COMMAND (a command job) and print its
    key; `jobworker run --stage S` without a command runs it on any worker.

    Put `--` before the command.  The command runs without a shell (give
    `bash -c '...'` for one).  Submitting the same --key again adds
    nothing (the job is left as it is)."""
    argv = list(command)
    payload = command_payload(argv, os.getcwd() if record_cwd else None, env_names)
    job: dict[str, Any] = {"key": key or default_key(argv), "payload": payload}
    if stage:
        job["stage"] = stage
    if after:
        job["after"] = list(dict.fromkeys(after))
    if priority is not None:
        job["priority"] = priority
    if max_attempts is not None:
        job["max_attempts"] = max_attempts
    got = obj.client().push([job], strict=strict)
    click.echo(job["key"])
    if got.get("changed"):
        click.echo(f"warning: job {job['key']} was on the board already, with another "
                   f"command or dependencies: left as it was", err=True)
    elif not got.get("created"):
        click.echo(f"job {job['key']} was on the board already: left as it was", err=True)


@main.command()
@click.argument("keys", nargs=-1)
@click.option("--failed", is_flag=True, help="Retry every failed job of the board.")
@click.option("--cancelled", is_flag=True, help="Retry every cancelled job of the board.")
@click.pass_obj
@_fail_cleanly
def retry(obj: Ctx, keys: tuple[str, ...], failed: bool, cancelled: bool) -> None:
    """Put failed or cancelled jobs (by KEY, or all of them with --failed
    and/or --cancelled) back at the stage where they last waited, with a
    fresh attempt budget; jobs whose upstream jobs are not done wait blocked
    until they are, and blocked jobs downstream of them run once they are
    done.  Jobs that are not failed or cancelled are left alone."""
    if not keys and not failed and not cancelled:
        raise click.UsageError("name job keys, or pass --failed and/or --cancelled")
    if keys and (failed or cancelled):
        raise click.UsageError("name job keys or pass --failed/--cancelled, not both")
    client = obj.client()
    if keys:
        named = list(dict.fromkeys(keys))
        n = client.retry(keys=named)
        rest = len(named) - n
        click.echo(f"retried {n} job(s)" + (f" ({rest} of the {len(named)} named: not failed "
                                            f"or cancelled, or not on the board)" if rest else ""))
    else:
        click.echo(f"retried {client.retry(failed=failed, cancelled=cancelled)} job(s)")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("priority", type=click.IntRange(*INT32))
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
@_fail_cleanly
def priority(obj: Ctx, priority: int, keys: tuple[str, ...]) -> None:
    """Set the PRIORITY (an integer, negative allowed; the default is 0) of
    waiting or blocked jobs by KEY: claims take the highest first, then the
    oldest.  Running, done, failed and cancelled jobs are left alone.

    e.g. `jobworker priority 10 sim-7 sim-8`, `jobworker priority -5 big-1`."""
    named = list(dict.fromkeys(keys))
    n = obj.client().set_priority(named, priority)
    rest = len(named) - n
    click.echo(f"set the priority of {n} job(s) to {priority}"
               + (f" ({rest} of the {len(named)} named: not waiting or blocked, or not on "
                  f"the board)" if rest else ""))
