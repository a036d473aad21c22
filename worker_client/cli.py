"""`jobworker`: run commands for a board's jobs; pool (workers in batch
allocations); push, submit, status, watch, job, logs, resources, workers,
cancel, retry, priority; token (a board's tokens with a role), share.

Every option has an environment fallback: JOBSERVER_URL, JOBSERVER_BOARD,
JOBSERVER_TOKEN (and JOBSERVER_JOBIX for the classic protocol).
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from .client import ApiError, Client, Unavailable
from .transport import BRISK, BRISK_CONNECT, check_url

EXIT_FAILED_JOBS = 3  # jobs failed for good (1: an error, 2: bad usage)


class BadUsage(click.ClickException):
    """A usage mistake told in one line (exit 2, as click's usage errors)."""
    exit_code = 2


class Ctx:
    def __init__(self, url: str | None, board: str | None, token: str | None) -> None:
        self.url, self.board, self.token = url, board, token

    def checked_url(self) -> str:
        if not self.url:
            raise click.UsageError("missing --url/JOBSERVER_URL")
        try:
            return check_url(self.url)
        except ValueError:
            raise BadUsage(f"--url must start with http:// or https://, "
                           f"got {self.url!r}") from None

    def client(self, patient: bool = False) -> Client:
        """A client for this board.  ``patient`` (workers): connection
        errors and 5xx are retried for 10 minutes; otherwise (a person at a
        terminal) for a few seconds, then one line says what to check."""
        if self.url:
            self.checked_url()
        missing = [n for n, v in (("--url/JOBSERVER_URL", self.url),
                                  ("--board/JOBSERVER_BOARD", self.board),
                                  ("--token/JOBSERVER_TOKEN", self.token)) if not v]
        if missing:
            raise click.UsageError("missing " + ", ".join(missing))
        url = self.checked_url()
        if patient:
            client = Client(url, self.board, self.token)  # type: ignore[arg-type]
        else:
            client = Client(url, self.board, self.token,  # type: ignore[arg-type]
                            retry_for=BRISK, connect_timeout=BRISK_CONNECT)
        click.get_current_context().call_on_close(client.close)
        return client


@click.group(help=__doc__)
@click.option("--url", envvar="JOBSERVER_URL", help="Server URL, e.g. http://host:5000.")
@click.option("--board", envvar="JOBSERVER_BOARD", help="Board name.")
@click.option("--token", envvar="JOBSERVER_TOKEN", help="The board's API token.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request and job.")
@click.pass_context
def main(ctx: click.Context, url: str | None, board: str | None, token: str | None,
         verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not verbose:  # our own retry lines say it better (transport.Patience)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    ctx.obj = Ctx(url, board, token)


def explain(exc: ApiError | Unavailable) -> str:
    """One line: what went wrong and what to check."""
    if isinstance(exc, Unavailable):
        if exc.reached:
            return (f"the server at {exc.url} keeps failing ({exc.reason}): "
                    f"see the server's log")
        running = "" if exc.reason == "host name not found" else " is it running?"
        return (f"cannot reach the server at {exc.url} ({exc.reason}):{running} "
                f"check --url/JOBSERVER_URL")
    if exc.status == 401:
        return (f"the server refused the token ({exc.message}): "
                f"check --token/JOBSERVER_TOKEN")
    if exc.status == 403:
        return f"{exc.message}: check --board/JOBSERVER_BOARD and --token/JOBSERVER_TOKEN"
    if ((exc.status == 404 and exc.message.startswith("The requested URL was not found"))
            or (exc.status == 405 and exc.message.startswith("The method is not allowed"))):
        # a path the server does not route (its own 404/405, not the API's)
        return (f"no jobserver API at {exc.url} ({exc.status}): check --url/JOBSERVER_URL "
                f"(the server's address, e.g. http://host:5000)")
    return exc.message if exc.status == 404 else f"{exc.message} ({exc.status} {exc.error})"


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """API and connection errors: one line, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ApiError, Unavailable) as exc:
            raise click.ClickException(explain(exc)) from None
    return wrapper


RUN_EPILOG = """\b
Exit status:
  0  every job it ran is done (or was failed and will be retried)
  1  an error: e.g. the server unreachable for 10 minutes, a refused token
  2  bad usage (options, --url without http://)
  3  jobs it ran failed for good (the summary says how many); with
     --classic: commands failed (the sweeper decides later)
"""


@main.command(context_settings={"ignore_unknown_options": True}, epilog=RUN_EPILOG)
@click.option("--stage", type=click.IntRange(0), required=True, help="Claim jobs at this stage.")
@click.option("--to-stage", type=click.IntRange(0), default=None,
              help="Stage a claimed job moves to while it runs [default: stage + 1]; "
                   "it is reported one stage further.")
@click.option("--parallel", type=click.IntRange(1), default=1, show_default=True,
              envvar="JOBWORKER_PARALLEL", help="Commands run at once.")
@click.option("--batch", type=click.IntRange(1, 1000), default=None,
              help="Jobs claimed per request [default: --parallel].")
@click.option("--continuous", is_flag=True,
              help="Keep waiting on an empty board for new jobs (the server holds the "
              "claim until work comes; an older server is asked every 2 s).")
@click.option("--wait-orphans", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="With nothing left to claim, wait up to SECONDS for jobs held by lost "
                   "workers to come back to --stage, and run them [default: their stage's "
                   "lifetime plus a minute, at most 30 min; 0: do not wait].")
@click.option("--idle-exit", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="Keep looking for work (as --continuous, also for jobs blocked or held by "
                   "lost workers) and leave after SECONDS without any: a worker in a batch "
                   "allocation frees its node (`jobworker pool` starts workers with 60).")
@click.option("--max-jobs", type=click.IntRange(1), default=None, help="Stop after this many.")
@click.option("--timeout", type=float, default=None, help="Seconds a command may run.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR",
              help="Keep each attempt's stdout and stderr in DIR/<key>.s<stage>.a<attempt>"
                   ".out and .err (DIR is created).")
@click.option("--tee", is_flag=True,
              help="Show the commands' output lines, prefixed by [job key].")
@click.option("--classic", is_flag=True, help="Speak the classic protocol (needs --jobix).")
@click.option("--jobix", type=int, envvar="JOBSERVER_JOBIX", help="Classic job list id.")
@click.argument("command", nargs=-1, required=False, type=click.UNPROCESSED)
@click.pass_context
@_fail_cleanly
def run(ctx: click.Context, stage: int, to_stage: int | None, parallel: int, batch: int | None,
        continuous: bool, wait_orphans: float | None, idle_exit: float | None,
        max_jobs: int | None, timeout: float | None,
        output_dir: Path | None, tee: bool, classic: bool, jobix: int | None,
        command: tuple[str, ...]) -> None:
    """Run COMMAND once per job: `jobworker run --stage 0 -- ./sim {payload[input]}`;
    without COMMAND, run each job's own command (command jobs, pushed by
    `jobworker submit` or the workflow builder: payload {"command": [argv],
    "cwd": dir, "env": {NAME: value}}; a job without one fails).

    The job is in the environment (JOB_KEY, JOB_STAGE, JOB_PAYLOAD as JSON,
    JOB_ATTEMPT) and substituted in ARGS ({key}, {stage}, {attempt},
    {payload} as JSON, {payload[name]}; other braces are left alone).  Exit 0
    advances the job; anything else fails it with the tail of stderr (the
    board retries it up to its max_attempts, then it is failed for good).
    The output's tail reaches the server with each heartbeat while the job
    runs.  With nothing left to claim it exits, once the jobs of its stage
    held by lost workers have come back and run (--wait-orphans).
    Output lines @event=[NAME:message], @log=[message] and @var=[name:value]
    become the job's events while it runs; on success its vars are the
    fields of its result.  SIGTERM/SIGINT: finish running jobs and exit; a second signal stops them
    and gives them back (a command killed by a signal after the worker was
    told to stop, as a batch scheduler ending an allocation does, is given
    back too).  Inside a batch allocation the worker reports it
    (JOBSERVER_ALLOCATION, else SLURM_JOB_ID) with its claims and
    heartbeats.  This command waits out server outages
    (10 minutes); the others fail within seconds.
    """
    from .runner import Runner, RunOptions
    from .sources import ApiSource, ClassicSource

    obj: Ctx = ctx.obj
    opts = RunOptions(stage=stage, command=list(command), to_stage=to_stage, parallel=parallel,
                      batch=batch or parallel, continuous=continuous, max_jobs=max_jobs,
                      timeout=timeout, output_dir=output_dir, tee=tee, wait_orphans=wait_orphans,
                      idle_exit=idle_exit)
    if output_dir is not None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(f"cannot create --output-dir {output_dir}: "
                                       f"{exc.strerror or exc}") from None
    if classic:
        from .classic import ClassicClient

        if jobix is None or not obj.url:
            raise click.UsageError("--classic needs --url and --jobix (or JOBSERVER_JOBIX)")
        source: Any = ClassicSource(ClassicClient(obj.checked_url(), jobix), opts)
    else:
        source = ApiSource(obj.client(patient=True), opts)
    runner = Runner(source, opts, classic=classic)
    runner.install_signals()
    stats = runner.run()
    click.echo(stats.summary(classic=classic), err=True)
    if stats.stopped_by:
        raise click.ClickException(f"stopped: {stats.stopped_by}")
    if stats.failed_for_good or (classic and stats.failed_attempts):
        ctx.exit(EXIT_FAILED_JOBS)


def _read_jobs(stream: Any) -> Iterator[dict[str, Any]]:
    text = stream.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise click.ClickException(f"not a JSON array: {exc}") from None
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    raise click.ClickException(f"line {n} is not JSON: {exc}") from None
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or "key" not in item:
            raise click.ClickException(f"job {n}: expected an object with a \"key\"")
    return iter(items)


@main.command()
@click.argument("file", type=click.File("r"))
@click.option("--chunk", type=click.IntRange(1), default=50_000, show_default=True,
              help="Jobs per request.")
@click.pass_obj
@_fail_cleanly
def push(obj: Ctx, file: Any, chunk: int) -> None:
    """Push jobs from FILE (- for stdin): JSON lines or a JSON array of
    {"key": unique, "payload": any JSON, "stage": 0}.  Pushing twice is safe."""
    jobs = list(_read_jobs(file))
    client = obj.client()
    if sys.stderr.isatty():
        with click.progressbar(length=len(jobs), label="pushing", file=sys.stderr) as bar:
            got = client.push(jobs, chunk=chunk, progress=bar.update)
    else:
        got = client.push(jobs, chunk=chunk)
    click.echo(f"created {got['created']}, existing {got['existing']}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@click.pass_obj
@_fail_cleanly
def status(obj: Ctx, as_json: bool) -> None:
    """Progress, jobs per stage, failures grouped by error, lost workers."""
    from .show import status_lines

    client = obj.client()
    s = client.status()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    failures = client.failures() if s["progress"].get("failed") else None
    for line in status_lines(client.board, s, failures, client.workers()):
        click.echo(line)


@main.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the raw job as JSON.")
@click.option("--lines", type=click.IntRange(0), default=30, show_default=True,
              help="Lines of the log tail shown (0: all the server keeps).")
@click.pass_obj
@_fail_cleanly
def job(obj: Ctx, key: str, as_json: bool, lines: int) -> None:
    """One job: state, stage, attempts, error, result, log tail."""
    from .show import job_lines

    got = obj.client().job(key)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    for line in job_lines(got, lines):
        click.echo(line)


@main.command()
@click.argument("key")
@click.option("--attempt", type=click.IntRange(1), default=None, metavar="N",
              help="The job's N-th attempt (1: its first, as the job page numbers them) "
                   "[default: its latest].")
@click.option("--stream", type=click.Choice(["both", "out", "err"]), default="both",
              show_default=True, help="stdout (out), stderr (err) or both.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing the output as it comes, until the attempt ends (a job "
                   "that has not started yet is waited for).")
@click.pass_context
@_fail_cleanly
def logs(ctx: click.Context, key: str, attempt: int | None, stream: str, follow: bool) -> None:
    """What job KEY printed (its live log): the output its worker sends with
    every heartbeat while it runs, kept per attempt.  Past the server's
    bounds the oldest part is dropped, and a line says how much.
    Ctrl-C stops following."""
    client = ctx.obj.client()
    if not follow:
        click.echo(client.log(key, attempt, stream), nl=False)
        return
    try:
        for text in client.follow_log(key, attempt, stream):
            click.echo(text, nl=False)
            sys.stdout.flush()
    except KeyboardInterrupt:
        ctx.exit(130)  # as a shell counts an interrupted command, without a traceback


@main.command()
@click.argument("key")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV with a header: attempt_id, stage, at (epoch seconds), host, "
                   "allocation, cpu_percent, rss_bytes, runtime_s.")
@click.pass_obj
@_fail_cleanly
def resources(obj: Ctx, key: str, as_csv: bool) -> None:
    """A job's resource log: CPU %, memory (RSS) and run time of each of its
    attempts over time, with the host and batch allocation it ran on (from
    the workers' heartbeats)."""
    from .show import resource_csv, resource_lines

    samples = obj.client().resources(key)
    if as_csv:
        click.echo(resource_csv(samples), nl=False)
        return
    for line in resource_lines(key, samples):
        click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw list as JSON.")
@click.pass_obj
@_fail_cleanly
def workers(obj: Ctx, as_json: bool) -> None:
    """The board's workers: host, state, jobs held, CPU and memory, last seen."""
    from .show import worker_lines

    got = obj.client().workers()
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    for line in worker_lines(got):
        click.echo(line)


@main.command()
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.pass_context
@_fail_cleanly
def watch(ctx: click.Context, interval: float) -> None:
    """Follow the board live (progress bar, counts, rate, ETA, failures)
    until nothing is waiting or running; on a non-terminal, one line per
    refresh.  Exits 0 when no job failed, 3 when some did."""
    from .watch import watch as follow

    code = follow(ctx.obj.client(), interval)
    ctx.exit(code)


@main.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Cancel every active job of the board.")
@click.pass_obj
@_fail_cleanly
def cancel(obj: Ctx, keys: tuple[str, ...], everything: bool) -> None:
    """Cancel jobs by KEY (or --all); running ones stop at their next heartbeat."""
    if not keys and not everything:
        raise click.UsageError("name job keys or pass --all")
    n = obj.client().cancel(None if everything else list(keys))
    click.echo(f"cancelled {n}")


@main.command()
@click.option("--jobs", "n_jobs", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--clients", type=click.IntRange(1), default=8, show_default=True)
@click.option("--batch", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--admin-token", envvar="JOBSERVER_ADMIN_TOKEN", required=True,
              help="The server's admin token (JOBSERVER_ADMIN_TOKEN): the benchmark "
                   "creates boards of its own, and deletes them when done.")
@click.pass_obj
@_fail_cleanly
def bench(obj: Ctx, n_jobs: int, clients: int, batch: int, admin_token: str) -> None:
    """Measure push, batch lifecycle (claim/advance BATCH, CLIENTS at once) and
    the single-job loop against --url on fresh boards of its own."""
    from .bench import run_bench

    try:
        for line in run_bench(obj.checked_url(), admin_token, n_jobs, clients, batch):
            click.echo(line)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


# more commands: events; pool, resources; token, share; submit, retry, priority
from . import cli_events, cli_pool, cli_tokens, cli_workflows  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    main()
