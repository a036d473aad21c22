#!/usr/bin/env python3
"""Benchmark the JSON API: push, batch lifecycle and the single-job loop.

Starts `jobserver serve` on a free port with a fresh SQLite file and, for
each workload, prints jobs/s through HTTP beside an in-process ceiling (the
same lifecycle calls on SQLite without HTTP) measured in the same run:

- push: N jobs in one gzip request of JSON (Client.push) vs lifecycle.push;
- batch: C client processes each looping claim(B) / advance(B) vs one
  in-process loop of the same;
- single: C client processes looping claim(1) / advance(1) vs in-process.

    .venv/bin/python bench/api_bench.py --jobs 100000 --clients 8 --batch 100
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from classic_bench import ADMIN_TOKEN, ROOT, cpu_seconds, start_server  # noqa: E402

sys.path.insert(0, str(ROOT))


def make_board(url: str, name: str):
    from worker_client import Client

    req = urllib.request.Request(f"{url}/api/v1/boards", method="POST",
                                 data=json.dumps({"name": name, "lifetimes": [0, 60, 0]}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {ADMIN_TOKEN}"})
    token = json.loads(urllib.request.urlopen(req).read())["token"]
    return Client(url, name, token), token


def client_loop(url: str, board: str, token: str, batch: int, out: "mp.Queue[int]") -> None:
    from worker_client import Client

    c = Client(url, board, token)
    done = 0
    while True:
        jobs = c.claim(0, batch)
        if not jobs:
            break
        c.advance(jobs)
        done += len(jobs)
    out.put(done)


def http_lifecycle(url: str, name: str, n: int, clients: int, batch: int,
                   server_pid: int) -> tuple[float, float]:
    master, token = make_board(url, name)
    master.push({"key": str(i), "payload": {"i": i}} for i in range(n))
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=client_loop, args=(url, name, token, batch, q))
             for _ in range(clients)]
    cpu0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join()
    assert total == n, (total, n)
    assert master.status()["counts"] == {2: n}
    return n / elapsed, cpu / n * 1000


def inprocess(n: int, batch: int) -> tuple[float, float]:
    """(push jobs/s, claim+advance jobs/s) through lifecycle on SQLite."""
    from jobserver import create_app, lifecycle
    from jobserver.lifecycle import Advance, NewJob

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/b.sqlite", "SWEEP_MODE": "off"})
        with app.app_context():
            b = lifecycle.create_board("ceiling", [0, 60, 0])
            jobs = [NewJob(str(i), json.dumps({"i": i}), 0) for i in range(n)]
            t0 = time.perf_counter()
            lifecycle.push(b.id, jobs)
            push_rate = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            while True:
                got = lifecycle.claim(b.id, 0, batch, worker="w", lease=True)
                if not got:
                    break
                lifecycle.advance(b.id, [Advance(j.attempt_id) for j in got])
            return push_rate, n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs pushed and batch-processed")
    ap.add_argument("--single-jobs", type=int, default=3000, help="jobs for the single-job loop")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    ap.add_argument("--batch", type=int, default=100, help="jobs per claim/advance")
    args = ap.parse_args()

    push_ceiling, batch_ceiling = inprocess(args.jobs, args.batch)
    _, single_ceiling = inprocess(args.single_jobs, 1)
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp)
        try:
            client, _ = make_board(url, "push")
            payload = [{"key": str(i), "payload": {"i": i}} for i in range(args.jobs)]
            t0 = time.perf_counter()
            got = client.push(payload, chunk=args.jobs)
            push_rate = args.jobs / (time.perf_counter() - t0)
            assert got["created"] == args.jobs
            batch_rate, batch_cpu = http_lifecycle(url, "batch", args.jobs, args.clients,
                                                   args.batch, server.pid)
            single_rate, single_cpu = http_lifecycle(url, "single", args.single_jobs,
                                                     args.clients, 1, server.pid)
        finally:
            server.terminate()
            server.wait()

    def line(what: str, rate: float, ceiling: float, cpu: float | None = None) -> str:
        extra = f", server CPU {cpu:.3f} ms/job" if cpu is not None else ""
        return (f"{what:52s} {rate:9,.0f} jobs/s  (in-process ceiling {ceiling:9,.0f} jobs/s, "
                f"ratio {rate / ceiling:.2f}{extra})")

    print(line(f"push {args.jobs} jobs (one gzip request)", push_rate, push_ceiling))
    print(line(f"batch claim/advance {args.batch}, {args.clients} clients", batch_rate,
               batch_ceiling, batch_cpu))
    print(line(f"single-job claim/advance, {args.clients} clients", single_rate,
               single_ceiling, single_cpu))


if __name__ == "__main__":
    main()
