#!/usr/bin/env python3
"""How the server scales: SQLite, PostgreSQL with 1-3 processes, bare Flask.

How to run (the full run takes several minutes and wants an idle machine):

    .venv/bin/python bench/scale_bench.py
    .venv/bin/python bench/scale_bench.py --jobs 200 --batch-jobs 2000 --only sqlite,bare

PostgreSQL is 127.0.0.1:5432, user postgres (trust), database `scale_bench`
(dropped and created afresh for each set-up, dropped at the end; never
`test`, the test suite's).  When it does not answer, its rows are skipped
with a line saying why.  Redis at 127.0.0.1:6379/13 is the Socket.IO message
queue of the multi-process set-ups when it answers (README: Scaling out).

For each server set-up it runs three loops through HTTP and prints one table:

- classic: W worker processes, each GET /get/0 then GET /update_job/<id>/2
  (classic_bench.worker, a new connection per request as the seed's urllib);
- single: W client processes looping Client.claim(1) / advance (api_bench);
- batch: the same with claim(B) / advance (B = --batch, 100).

Set-ups (--only picks some): sqlite (1 `jobserver serve`, fresh SQLite file),
pg1, pg2, pg3 (1, 2, 3 `jobserver serve` processes on one PostgreSQL
database, workers spread round-robin over their URLs, no proxy), bare
(bench/bare_flask.py: Flask + the same eventlet server, jobs in a deque:
the floor), inprocess (the lifecycle calls without HTTP on SQLite: the
ceiling).

Columns: jobs/s (wall clock from the first worker's start to the last
answer), server CPU ms per job (user + system, summed over the server
processes; PostgreSQL's and Redis's own CPU is not counted), % of one core
(the same sum over the wall time), jobs claimed twice (dup) and never
(lost), then ratios: jobs/s over the SQLite row's, CPU/job over the SQLite
row's and over the bare-Flask row's (same loop).  The last lines are the
issue's targets.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import textwrap
import time
import urllib.request
import zlib
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classic_bench import ROOT, cpu_seconds, inprocess_run, start_server, worker  # noqa: E402
from api_bench import inprocess, make_board  # noqa: E402

SETUPS = ("sqlite", "pg1", "pg2", "pg3", "bare", "inprocess")
LOOPS = ("classic", "single", "batch")
LABELS = {"sqlite": "SQLite x1", "pg1": "PostgreSQL x1", "pg2": "PostgreSQL x2",
          "pg3": "PostgreSQL x3", "bare": "bare Flask", "inprocess": "in-process SQLite"}
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/13"
JOBIX = 1
# every process of one deployment shares the key of classic boards' names
NAME_SECRET = "scale-bench-name-secret-0123456789abcdef"


@dataclass
class Result:
    setup: str
    loop: str
    jobs: int
    elapsed: float
    cpu: float | None  # server CPU seconds, all processes
    dupes: int = 0
    lost: int = 0

    @property
    def rate(self) -> float:
        return self.jobs / self.elapsed

    @property
    def cpu_ms(self) -> float | None:
        return None if self.cpu is None else 1000 * self.cpu / self.jobs


# ------------------------------------------------------------------ workers

def api_loop(url: str, board: str, token: str, batch: int, out: "mp.Queue[list[str]]") -> None:
    """api_bench.client_loop, keeping the keys it got (to count duplicates)."""
    from worker_client import Client

    c = Client(url, board, token)
    got: list[str] = []
    while True:
        jobs = c.claim(0, batch)
        if not jobs:
            break
        c.advance(jobs)
        got += [j.key for j in jobs]
    out.put(got)


OUT = object()  # in a worker's arguments: where its result queue goes


def run_workers(targets: list[tuple], server_pids: list[int]) -> tuple[float, float, list]:
    """Start one process per (function, args...), OUT standing for the queue
    each puts its list of claimed keys on; (wall seconds, server CPU seconds
    over ``server_pids``, every key claimed)."""
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_child, args=(t[0], *(q if a is OUT else a for a in t[1:])))
             for t in targets]
    claimed: list = []
    answered = 0
    cpu0 = sum(cpu_seconds(p) for p in server_pids)
    t0 = time.perf_counter()
    try:
        for p in procs:
            p.start()
        while answered < len(procs):
            try:
                claimed += q.get(timeout=0.5)
                answered += 1
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"{len(dead)} worker process(es) failed "
                                       f"(exit code {dead[0].exitcode})") from None
        elapsed = time.perf_counter() - t0
        cpu = sum(cpu_seconds(p) for p in server_pids) - cpu0
    finally:
        # all answered: let them exit (10 s at most); a failure: stop them now
        deadline = time.monotonic() + (10 if answered == len(procs) else 0)
        for p in procs:
            if p.pid is not None:
                p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join()
    return elapsed, cpu, claimed


def _child(target, *args) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's clean-up handler
    target(*args)


def counted(setup: str, loop: str, n: int, run: tuple[float, float, list]) -> Result:
    elapsed, cpu, claimed = run
    dupes = sum(c - 1 for c in collections.Counter(claimed).values() if c > 1)
    return Result(setup, loop, n, elapsed, cpu, dupes, n - len(set(claimed)))


# ------------------------------------------------------------------ loops

def classic_loop(setup: str, urls: list[str], pids: list[int], n: int, workers: int,
                 keepalive: bool) -> Result:
    head = {"jobix": str(JOBIX)}
    body = zlib.compress(json.dumps(
        {str(i): {"jobstage": 0, "jobcmd": ["sim", i]} for i in range(n)}).encode())
    for path, data in (("/init/60/60/0", None), ("/set", body)):
        urllib.request.urlopen(urllib.request.Request(urls[0] + path, data, head)).read()
    targets = [(worker, urls[i % len(urls)], JOBIX, OUT, keepalive) for i in range(workers)]
    return counted(setup, "classic", n, run_workers(targets, pids))


def api_run(setup: str, loop: str, urls: list[str], pids: list[int], n: int, workers: int,
            batch: int) -> Result:
    master, token = make_board(urls[0], loop)
    master.push(({"key": str(i), "payload": {"i": i}} for i in range(n)), chunk=50_000)
    targets = [(api_loop, urls[i % len(urls)], loop, token, batch, OUT) for i in range(workers)]
    got = counted(setup, loop, n, run_workers(targets, pids))
    master.close()
    return got


def http_setup(setup: str, servers: list[tuple], args: argparse.Namespace) -> list[Result]:
    urls = [u for _, u in servers]
    pids = [s.pid for s, _ in servers]
    out = []
    for loop in args.loops:
        print(f"  {LABELS[setup]}: {loop} loop", file=sys.stderr, flush=True)
        if loop == "classic":
            out.append(classic_loop(setup, urls, pids, args.jobs, args.workers, args.keepalive))
        elif loop == "single":
            out.append(api_run(setup, loop, urls, pids, args.jobs, args.workers, 1))
        else:
            out.append(api_run(setup, loop, urls, pids, args.batch_jobs, args.workers,
                               args.batch))
    return out


# ------------------------------------------------------------------ servers

def start_group(tmp: str, n: int, mode: str, database: str | None,
                extra_env: dict[str, str | None], command: list[str] | None,
                into: list) -> None:
    """n servers, one after the other (the first migrates a fresh database
    before the next starts); each is appended to ``into`` as it comes up, so
    that the caller stops them all whatever happens."""
    for i in range(n):
        instance = os.path.join(tmp, f"instance{i}")
        os.mkdir(instance)
        log = os.path.join(instance, "server.log")
        try:
            into.append(start_server(instance, mode, database, extra_env, command, log=log))
        except RuntimeError as exc:  # once more, on another free port
            print(f"  server {i + 1} of {n}: {exc}; starting it again", file=sys.stderr)
            into.append(start_server(instance, mode, database, extra_env, command, log=log))


def stop_all(servers: list[tuple]) -> None:
    for s, _ in servers:
        if s.poll() is None:
            s.terminate()
    for s, _ in servers:
        try:
            s.wait(timeout=10)
        except Exception:
            s.kill()
            s.wait()


def postgres_problem(dbname: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    if dbname in ("test", "postgres", "template0", "template1"):
        return f"refusing to use the database {dbname!r}"
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install '.[postgres]')"
    try:
        psycopg.connect(plain(PG_SERVER) + "/postgres", connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 (any failure: skip with its reason)
        return f"{PG_SERVER} does not answer ({str(exc).strip().splitlines()[0]})"
    return None


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


def fresh_database(dbname: str, drop_only: bool = False) -> str:
    import psycopg

    assert dbname != "test"
    with psycopg.connect(plain(PG_SERVER) + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    return f"{PG_SERVER}/{dbname}"


def redis_problem() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed (pip install '.[scale]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"{REDIS_URL} does not answer ({exc})"
    return None


# `jobserver serve` from another source tree (bench/events_bench.py: the
# code before a change), the tree given first
FROM_TREE = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
             "from jobserver.cli import main; main()")


def run_setup(setup: str, args: argparse.Namespace, use_redis: bool,
              tree: str | None = None) -> list[Result]:
    env: dict[str, str | None] = {"JOBSERVER_MESSAGE_QUEUE": None,
                                  "JOBSERVER_NAME_SECRET": NAME_SECRET}
    database = None
    command = None if tree is None else [sys.executable, "-c", FROM_TREE, tree, "serve"]
    n = 1
    if setup.startswith("pg"):
        n = int(setup[2:])
        database = fresh_database(args.pg_database)
        if n > 1 and use_redis:
            env["JOBSERVER_MESSAGE_QUEUE"] = REDIS_URL
    elif setup == "bare":
        command = [sys.executable, str(ROOT / "bench" / "bare_flask.py")]
    servers: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            print(f"{LABELS[setup]}: starting {n} server process(es)", file=sys.stderr, flush=True)
            start_group(tmp, n, args.async_mode, database, env, command, servers)
            return http_setup(setup, servers, args)
        finally:
            stop_all(servers)


def inprocess_rows(args: argparse.Namespace) -> list[Result]:
    print("in-process ceiling", file=sys.stderr, flush=True)
    out = []
    if "classic" in args.loops:
        out.append(Result("inprocess", "classic", args.jobs, inprocess_run(args.jobs), None))
    if "single" in args.loops:
        rate = inprocess(args.jobs, 1)[1]
        out.append(Result("inprocess", "single", args.jobs, args.jobs / rate, None))
    if "batch" in args.loops:
        rate = inprocess(args.batch_jobs, args.batch)[1]
        out.append(Result("inprocess", "batch", args.batch_jobs, args.batch_jobs / rate, None))
    return out


# ------------------------------------------------------------------ report

def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def table(results: list[Result]) -> list[str]:
    by = {(r.setup, r.loop): r for r in results}
    lines = [f"{'set-up':17s} {'loop':7s} {'jobs':>6s} {'jobs/s':>7s} {'CPU ms':>7s} "
             f"{'%core':>5s} {'dup':>4s} {'lost':>4s} {'rate/SQ':>7s} {'CPU/SQ':>7s} "
             f"{'CPU/bare':>8s}"]
    for r in results:
        sq, bare = by.get(("sqlite", r.loop)), by.get(("bare", r.loop))
        cpu = "-" if r.cpu_ms is None else f"{r.cpu_ms:.2f}"
        core = "-" if r.cpu is None else f"{100 * r.cpu / r.elapsed:.0f}"
        dup, lost = ("-", "-") if r.setup == "inprocess" else (str(r.dupes), str(r.lost))
        lines.append(
            f"{LABELS[r.setup]:17s} {r.loop:7s} {r.jobs:6d} {r.rate:7.0f} {cpu:>7s} {core:>5s} "
            f"{dup:>4s} {lost:>4s} {ratio(r.rate, sq and sq.rate):>7s} "
            f"{ratio(r.cpu_ms, sq and sq.cpu_ms):>7s} {ratio(r.cpu_ms, bare and bare.cpu_ms):>8s}")
    return lines


def targets(results: list[Result]) -> list[str]:
    by = {(r.setup, r.loop): r for r in results}

    def get(setup: str, attr: str) -> float | None:
        r = by.get((setup, "classic"))
        return None if r is None else getattr(r, attr)

    def line(text: str, a: float | None, b: float | None, target: str) -> str:
        value = "n/a (not run)" if a is None or not b else f"{a / b:.2f}"
        return f"{text}: {value} (target {target})"

    return [
        line("PostgreSQL 1 process / SQLite 1 process (classic)",
             get("pg1", "rate"), get("sqlite", "rate"), ">= 0.8"),
        line("server CPU per job / bare Flask (classic, SQLite)",
             get("sqlite", "cpu_ms"), get("bare", "cpu_ms"), "<= 1.5"),
        line("PostgreSQL 2 processes / 1 process (classic)",
             get("pg2", "rate"), get("pg1", "rate"), "> 1"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000,
                    help="jobs of the single-job loops, classic and API (default 2000)")
    ap.add_argument("--batch-jobs", type=int, default=50_000,
                    help="jobs of the batch loop (default 50000)")
    ap.add_argument("--batch", type=int, default=100, help="jobs per claim/advance (default 100)")
    ap.add_argument("--workers", type=int, default=16,
                    help="worker/client processes of every loop (default 16)")
    ap.add_argument("--only", default=",".join(SETUPS),
                    help=f"comma-separated set-ups to run (default all: {','.join(SETUPS)})")
    ap.add_argument("--loops", default=",".join(LOOPS),
                    help=f"comma-separated loops to run (default all: {','.join(LOOPS)})")
    ap.add_argument("--async-mode", choices=["eventlet", "threading"], default="eventlet",
                    help="the servers' async mode (default eventlet, as `jobserver serve`)")
    ap.add_argument("--keepalive", action="store_true",
                    help="classic workers reuse one HTTP connection (default: a new one per "
                         "request, as the seed's urllib)")
    ap.add_argument("--pg-database", default="scale_bench",
                    help="the PostgreSQL database to drop and create (default scale_bench)")
    args = ap.parse_args()
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.loops = [s.strip() for s in args.loops.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in SETUPS] + [x for x in args.loops if x not in LOOPS]
    if unknown:
        ap.error(f"unknown set-up or loop: {', '.join(unknown)}")
    args.loops = [x for x in LOOPS if x in args.loops]  # the table's order

    # a SIGTERM unwinds like Ctrl-C, so the servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    notes = []
    pg_why = postgres_problem(args.pg_database) if any(
        s.startswith("pg") for s in args.only) else None
    if pg_why:
        notes.append(f"PostgreSQL rows skipped: {pg_why}")
    redis_why = redis_problem() if any(s in ("pg2", "pg3") for s in args.only) else None
    if any(s in ("pg2", "pg3") for s in args.only) and not pg_why:
        notes.append(f"message queue of PostgreSQL x2/x3: {REDIS_URL}" if not redis_why
                     else f"PostgreSQL x2/x3 run without a message queue: {redis_why}")

    results: list[Result] = []
    try:
        for setup in SETUPS:
            if setup not in args.only or setup == "inprocess":
                continue
            if setup.startswith("pg") and pg_why:
                continue
            try:
                results += run_setup(setup, args, use_redis=redis_why is None)
            except Exception as exc:  # noqa: BLE001 (one set-up failing: say so, go on)
                notes.append(f"{LABELS[setup]} failed: {type(exc).__name__}: {exc}")
                print(notes[-1], file=sys.stderr, flush=True)
    finally:
        if not pg_why and any(s.startswith("pg") for s in args.only):
            fresh_database(args.pg_database, drop_only=True)
    if "inprocess" in args.only:
        results += inprocess_rows(args)

    print(f"scale_bench: {args.jobs} jobs in the single-job loops, {args.batch_jobs} in the "
          f"batch loop (claim {args.batch}),")
    print(f"{args.workers} worker processes, {args.async_mode} servers, {os.cpu_count()} CPUs; "
          "CPU ms = server CPU per job")
    for n in notes:
        print(textwrap.fill(n, width=99, subsequent_indent="  "))
    print()
    for line in table(results):
        print(line)
    print()
    for line in targets(results):
        print(line)


if __name__ == "__main__":
    main()
