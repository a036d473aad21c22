#!/usr/bin/env python3
"""The dashboard at scale: a board of a million jobs.

Starts `jobserver serve` on a free port with a fresh SQLite file, pushes
N jobs (default 1,000,000) through the API, then prints:

1. server time (the Server-Timing header) of the board page and of job-table
   pages (first, deep, filtered, sorted), median of repeated requests;
2. live updates while workers claim and advance about R jobs/s (default
   1,000): dashboard messages received per second by a Socket.IO client
   joined to the board, and the largest gap between two;
3. the server's resident memory sampled every second during that load
   (first, last, largest).

    .venv/bin/python bench/dashboard_scale.py --jobs 1000000 --rate 1000 --seconds 30
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from api_bench import make_board, start_server  # noqa: E402
from classic_bench import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT))

TARGETS = {"board page": 300.0, "job table": 200.0}


def server_ms(url: str, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        with urllib.request.urlopen(url) as r:
            r.read()
            timing = r.headers["Server-Timing"]
        times.append(float(timing.split("dur=")[1]))
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(url: str, board: str, token: str, rate: float, seconds: float, batch: int) -> None:
    from worker_client import Client

    c = Client(url, board, token)
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < end:
        jobs = c.claim(0, batch)
        if not jobs:
            return
        c.advance(jobs)
        next_at += batch / rate
        time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="jobs/s claimed and advanced")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    import socketio

    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp)
        try:
            client, token = make_board(url, "scale")
            t0 = time.perf_counter()
            chunk = 100_000
            tty = sys.stdout.isatty()  # a progress line on a terminal, nothing in a log
            for start in range(0, args.jobs, chunk):
                client.push({"key": f"job-{i:07d}", "payload": {"seed": i, "input": f"/data/in/{i}.h5"}}
                            for i in range(start, min(start + chunk, args.jobs)))
                if tty:
                    print(f"\rpushed {min(start + chunk, args.jobs):,} jobs", end="", flush=True)
            print(f"{chr(13) if tty else ''}pushed {args.jobs:,} jobs in "
                  f"{time.perf_counter() - t0:.0f} s")
            # some history: a thousand done, twenty failed once (and requeued)
            client.advance(client.claim(0, 1000))
            for j in client.claim(0, 20):
                client.fail(j, "exit code 1: out of memory")
            # the server refreshes its planner statistics at the sweep after a
            # large push (every 5 s)
            time.sleep(6)
            base = f"{url}/boards/scale"
            pages = {
                "board page": base,
                "job table, first page": base + "/jobs.json",
                "job table, page 200": base + "/jobs.json?page=200",
                "job table, stage 2": base + "/jobs.json?stage=2",
                "job table, state failed": base + "/jobs.json?state=failed",
                "job table, key prefix": base + "/jobs.json?key=job-05",
                "job table, sorted by stage desc": base + "/jobs.json?sort=-stage",
            }
            print(f"\nserver time with {args.jobs:,} jobs on the board (median of 7):")
            for what, page in pages.items():
                ms = server_ms(page)
                target = TARGETS["board page" if what == "board page" else "job table"]
                print(f"  {what:34s} {ms:7.1f} ms   (target < {target:.0f} ms: "
                      f"{'ok' if ms < target else 'MISSED'})")

            # live updates under load
            stamps: list[float] = []
            sio = socketio.Client()
            sio.on("dashboard", lambda _d: stamps.append(time.monotonic()))
            sio.connect(url, transports=["websocket"])
            sio.call("join", {"board": "scale"})
            rss: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(1.0):
                    rss.append(rss_mb(server.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            per = args.rate / args.workers
            procs = [mp.Process(target=worker, args=(url, "scale", token, per, args.seconds, 20))
                     for _ in range(args.workers)]
            before = client.status()["counts"].get(2, 0)
            t0 = time.monotonic()
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            elapsed = time.monotonic() - t0
            time.sleep(1.5)
            stop.set()
            sampler.join()
            sio.disconnect()
            moved = client.status()["counts"].get(2, 0) - before
            window = [s for s in stamps if t0 <= s <= t0 + elapsed]
            gaps = [b - a for a, b in zip(window, window[1:])]
            print(f"\nload: {moved:,} jobs claimed and advanced in {elapsed:.1f} s "
                  f"({moved / elapsed:,.0f} jobs/s)")
            print(f"  live dashboard messages: {len(window)} ({len(window) / elapsed:.1f}/s), "
                  f"largest gap {max(gaps) if gaps else float('nan'):.2f} s")
            print(f"  server memory (RSS): first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB, "
                  f"largest {max(rss):.0f} MB over {len(rss)} samples")
            print(json.dumps({"rss_mb": [round(x) for x in rss]}))
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
