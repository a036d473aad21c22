#!/usr/bin/env python3
"""Benchmark workflows: a layered DAG against a flat board of the same size.

In one run, on fresh SQLite files, for a board of N jobs (default 100,000):

- DAG: L layers (default 10) of N/L jobs; each job after the first layer
  runs after jobs of the layer before it, E edges in all (default 2 N:
  200,000 for 100,000 jobs);
- flat: the same N jobs without dependencies.

Each is pushed in one request and then drained by one client looping
claim(B) / advance(B) (default B = 500) until every job is done: the DAG's
downstream jobs become claimable in the transaction that finishes their last
upstream job, so the drain never waits for a sweep.  Printed: push time,
drain rate (jobs/s), and the DAG / flat ratios, measured

- through HTTP (`jobserver serve` on a free port and a fresh SQLite file for
  each board, the JSON API, gzip push),
- and in-process (lifecycle.push_jobs / claim / advance, no HTTP), which is
  the database's share.

    .venv/bin/python bench/dag_bench.py                  # 100,000 jobs, 200,000 edges
    .venv/bin/python bench/dag_bench.py --jobs 10000     # a quick run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

sys.path.insert(0, os.path.dirname(__file__))
from api_bench import make_board  # noqa: E402
from classic_bench import ROOT, cpu_seconds, start_server  # noqa: E402

sys.path.insert(0, str(ROOT))

LIFETIMES = [0, 60, 0]  # queued, running (an hour's lease), done


def layered(n: int, layers: int, edges: int) -> Iterator[tuple[str, list[str]]]:
    """(key, after keys) of an n-job DAG of ``layers`` layers with ``edges``
    edges, each from the layer just before: the downstream jobs share them
    out evenly (the first ones take one more when they do not divide), and a
    job's upstream jobs are spread across the layer before."""
    width = max(1, n // layers)
    downstream = n - width
    base, extra = divmod(edges, downstream) if downstream else (0, 0)
    d = 0
    for i in range(n):
        layer, pos = divmod(i, width)
        if layer == 0:
            yield f"L0-{pos}", []
            continue
        k = min(width, base + (1 if d < extra else 0))
        d += 1
        prev = layer - 1
        step = width // k if k else 0
        yield f"L{layer}-{pos}", [f"L{prev}-{(pos + j * step) % width}" for j in range(k)]


def flat(n: int) -> Iterator[tuple[str, list[str]]]:
    for i in range(n):
        yield f"j{i}", []


def _timed(label: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    print(f"  {label}: {elapsed:.2f} s", file=sys.stderr, flush=True)
    return elapsed, out


# ------------------------------------------------------------------- HTTP

def http_run(url: str, name: str, jobs: list[tuple[str, list[str]]], batch: int,
             server_pid: int) -> dict[str, float]:
    """Push ``jobs`` through the API in one request, then drain them with
    one client; push seconds, drain jobs/s and server CPU ms per job."""
    client, _ = make_board(url, name)
    items = [{"key": k, "payload": {"i": i}, **({"after": a} if a else {})}
             for i, (k, a) in enumerate(jobs)]
    push_s, got = _timed(f"{name}: push", lambda: client.push(items, chunk=len(items)))
    assert got["created"] == len(jobs), got
    cpu0 = cpu_seconds(server_pid)

    def drain() -> int:
        done = 0
        while True:
            claimed = client.claim(0, batch)
            if not claimed:
                return done
            client.advance(claimed)
            done += len(claimed)

    drain_s, done = _timed(f"{name}: drain", drain)
    cpu = cpu_seconds(server_pid) - cpu0
    status = client.status()
    assert done == len(jobs) and status["counts"] == {2: len(jobs)}, (done, status["counts"])
    return {"push_s": push_s, "drain_rate": done / drain_s, "cpu_ms": cpu / done * 1000}


def on_fresh_server(name: str, jobs: list[tuple[str, list[str]]], batch: int) -> dict[str, float]:
    """http_run on a server of its own with a fresh SQLite file."""
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp)
        try:
            return http_run(url, name, jobs, batch, server.pid)
        finally:
            server.terminate()
            server.wait()


# ------------------------------------------------------------- in-process

def inprocess_run(tmp: str, name: str, jobs: list[tuple[str, list[str]]],
                  batch: int) -> dict[str, float]:
    """The same through lifecycle on its own SQLite file, without HTTP."""
    from jobserver import create_app, lifecycle
    from jobserver.extensions import db
    from jobserver.lifecycle import Advance, NewJob
    from jobserver.lifecycle.deps import Extras

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/{name}.sqlite", "SWEEP_MODE": "off"})
    with app.app_context():
        b = lifecycle.create_board(name, LIFETIMES)
        new = [NewJob(k, json.dumps({"i": i}), 0) for i, (k, _) in enumerate(jobs)]
        extras = {k: Extras(after=tuple(a)) for k, a in jobs if a}
        push_s, got = _timed(f"{name} (in-process): push",
                             lambda: lifecycle.push_jobs(b.id, new, extras))
        assert got.created == len(jobs), got

        def drain() -> int:
            done = 0
            while True:
                claimed = lifecycle.claim(b.id, 0, batch, worker="w", lease=True)
                if not claimed:
                    return done
                lifecycle.advance(b.id, [Advance(j.attempt_id) for j in claimed])
                done += len(claimed)

        drain_s, done = _timed(f"{name} (in-process): drain", drain)
        assert done == len(jobs), done
        app.extensions["jobserver_live"].stop()
        db.session.remove()
        db.engine.dispose()
    return {"push_s": push_s, "drain_rate": done / drain_s}


def report(where: str, n: int, edges: int, dag: dict[str, float],
           flat_: dict[str, float]) -> list[str]:
    def cpu(r: dict[str, float]) -> str:
        return f", server CPU {r['cpu_ms']:.3f} ms/job" if "cpu_ms" in r else ""

    return [
        f"{where}:",
        f"  DAG  {n:,} jobs, {edges:,} edges: push {dag['push_s']:6.2f} s, "
        f"drain {dag['drain_rate']:8,.0f} jobs/s{cpu(dag)}",
        f"  flat {n:,} jobs:{' ' * (len(f'{edges:,}') + 8)} push {flat_['push_s']:6.2f} s, "
        f"drain {flat_['drain_rate']:8,.0f} jobs/s{cpu(flat_)}",
        f"  DAG / flat: push time x{dag['push_s'] / flat_['push_s']:.2f}, "
        f"drain rate x{dag['drain_rate'] / flat_['drain_rate']:.2f} "
        f"(draining the DAG costs x{flat_['drain_rate'] / dag['drain_rate']:.2f} the time)",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs on each board")
    ap.add_argument("--layers", type=int, default=10, help="layers of the DAG")
    ap.add_argument("--edges", type=int, default=None,
                    help="dependencies in the DAG (default: twice the jobs)")
    ap.add_argument("--batch", type=int, default=500, help="jobs per claim/advance")
    ap.add_argument("--mode", choices=["both", "http", "inprocess"], default="both")
    args = ap.parse_args()
    if args.jobs < 2 * args.layers or args.layers < 2:
        ap.error("give at least two layers and two jobs per layer")
    edges_wanted = 2 * args.jobs if args.edges is None else args.edges
    dag = list(layered(args.jobs, args.layers, edges_wanted))
    edges = sum(len(a) for _, a in dag)
    plain = list(flat(args.jobs))
    lines = [f"workflow benchmark: {args.jobs:,} jobs, {args.layers} layers, {edges:,} edges, "
             f"claim/advance batches of {args.batch}, SQLite"]
    if args.mode in ("both", "http"):
        d = on_fresh_server("dag", dag, args.batch)
        f = on_fresh_server("flat", plain, args.batch)
        lines += report("through HTTP (a fresh server each, one client)", args.jobs, edges, d, f)
    if args.mode in ("both", "inprocess"):
        with tempfile.TemporaryDirectory() as tmp:
            d = inprocess_run(tmp, "dag", dag, args.batch)
            f = inprocess_run(tmp, "flat", plain, args.batch)
        lines += report("in-process (lifecycle, no HTTP)", args.jobs, edges, d, f)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
