#!/usr/bin/env python3
"""Benchmark the classic worker loop through HTTP.

Starts `jobserver serve` on a free port with a fresh SQLite file, pushes N
jobs, runs W concurrent classic workers (separate processes, each a
get/update_job loop like the seed document's worker) until the board is
empty, and prints jobs/s.  In the same run it measures an in-process claim
loop (lifecycle.claim + lifecycle.update_job on its own SQLite file, no
HTTP): the ratio of the two is the figure to quote.

    .venv/bin/python bench/classic_bench.py --jobs 2000 --workers 16
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(url: str, jobix: int, out: "mp.Queue[list[int]]", keepalive: bool) -> None:
    """The classic loop: GET /get/0, then GET /update_job/<id>/2."""
    import http.client

    headers = {"jobix": str(jobix)}
    got: list[int] = []
    if keepalive:
        host, port = url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port))

        def call(path: str) -> bytes:
            conn.request("GET", path, headers=headers)
            return conn.getresponse().read()
    else:
        def call(path: str) -> bytes:
            with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers)) as r:
                return r.read()
    while True:
        info = json.loads(call("/get/0"))
        if info == "nada":
            break
        got.append(info["jobid"])
        call(f"/update_job/{info['jobid']}/2")
    out.put(got)


ADMIN_TOKEN = "bench-admin"  # the benchmark servers' admin token (they create boards)


def start_server(instance: str, mode: str = "eventlet", database: str | None = None,
                 extra_env: dict[str, str | None] | None = None,
                 command: list[str] | None = None,
                 log: str | None = None) -> tuple[subprocess.Popen, str]:
    """`jobserver serve` on a free port with a fresh SQLite file in ``instance``
    (or on ``database``, a URL).  ``extra_env``: more variables (None removes
    one); ``command``: what to run instead of `jobserver serve` (it is given
    --port and --async-mode and must answer GET /); ``log``: a file for the
    server's output (its last line is quoted when the server does not start)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, JOBSERVER_INSTANCE=instance, JOBSERVER_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("JOBSERVER_DATABASE_URL", None)
    if database:
        env["JOBSERVER_DATABASE_URL"] = database
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    argv = command or [sys.executable, "-m", "jobserver", "serve"]
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        server = subprocess.Popen(
            [*argv, "--port", str(port), "--async-mode", mode],
            env=env, stdout=out, stderr=out, cwd=ROOT)
    finally:
        if log:
            out.close()
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/").read()
            return server, url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    server.wait()
    why = ""
    if log:
        lines = Path(log).read_text(errors="replace").strip().splitlines()
        why = f": {lines[-1]}" if lines else ""
    raise RuntimeError(f"the server did not start (exit code {server.returncode}){why}")


def http_run(n_jobs: int, n_workers: int, mode: str, keepalive: bool,
             database: str | None = None) -> tuple[float, int, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp, mode, database)
        try:
            jobix = 1
            body = zlib.compress(json.dumps(
                {str(i): {"jobstage": 0, "jobcmd": ["sim", i]} for i in range(n_jobs)}).encode())
            urllib.request.urlopen(urllib.request.Request(
                url + "/init/60/60/0", headers={"jobix": "1"})).read()
            urllib.request.urlopen(urllib.request.Request(
                url + "/set", data=body, headers={"jobix": "1"})).read()
            q: mp.Queue = mp.Queue()
            procs = [mp.Process(target=worker, args=(url, jobix, q, keepalive)) for _ in range(n_workers)]
            cpu0 = cpu_seconds(server.pid)
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            claimed: list[int] = []
            for _ in procs:
                claimed += q.get()
            elapsed = time.perf_counter() - t0
            server_cpu = cpu_seconds(server.pid) - cpu0
            for p in procs:
                p.join()
        finally:
            server.terminate()
            server.wait()
    dupes = sum(c - 1 for c in collections.Counter(claimed).values() if c > 1)
    lost = n_jobs - len(set(claimed))
    return elapsed, dupes, lost, server_cpu


def inprocess_run(n_jobs: int) -> float:
    """The same claim/update pair through lifecycle, without HTTP."""
    sys.path.insert(0, str(ROOT))
    from jobserver import create_app, lifecycle
    from jobserver.lifecycle import NewJob

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite", "SWEEP_MODE": "off"})
        with app.app_context():
            b = lifecycle.ensure_board(1)
            lifecycle.set_lifetimes_if_unset(b.id, [60, 60, 0])
            lifecycle.push(b.id, [NewJob(str(i), json.dumps(["sim", i]), 0) for i in range(n_jobs)])
            t0 = time.perf_counter()
            while True:
                b = lifecycle.find_board(1)
                got = lifecycle.claim(b.id, 0)
                if not got:
                    break
                lifecycle.update_job(b.id, got[0].key, 2)
            return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000, help="jobs pushed (default 2000)")
    ap.add_argument("--workers", type=int, default=16, help="concurrent worker processes (default 16)")
    ap.add_argument("--mode", choices=["threading", "eventlet", "both"], default="eventlet",
                    help="server async mode (default eventlet, as `jobserver serve`)")
    ap.add_argument("--database", default=None,
                    help="a database URL for the server (default: a fresh SQLite file); "
                         "a PostgreSQL database is used as it is: give an empty one")
    ap.add_argument("--keepalive", action="store_true",
                    help="workers reuse one HTTP connection (the seed's urllib does not)")
    args = ap.parse_args()

    base = inprocess_run(args.jobs)
    base_rate = args.jobs / base
    print(f"in-process SQLite claim+update loop: {base_rate:8.0f} jobs/s  ({args.jobs} jobs, 1 thread)")
    modes = ["threading", "eventlet"] if args.mode == "both" else [args.mode]
    for mode in modes:
        elapsed, dupes, lost, cpu = http_run(args.jobs, args.workers, mode, args.keepalive,
                                             args.database)
        rate = args.jobs / elapsed
        print(f"HTTP classic loop, {mode:9s}, {'PostgreSQL' if args.database else 'SQLite'}, "
              f"{args.workers} workers"
              f"{' keep-alive' if args.keepalive else ''}: {rate:8.0f} jobs/s "
              f"({rate / base_rate:.2f} of in-process), duplicates {dupes}, lost {lost}, "
              f"server CPU {1000 * cpu / args.jobs:.2f} ms/job ({100 * cpu / elapsed:.0f}% of a core)")


if __name__ == "__main__":
    main()
