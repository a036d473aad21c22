#!/usr/bin/env python3
"""Compare `jobserver serve` modes (threading vs eventlet) on what decides
the default:

1. throughput of the classic loop (see classic_bench.py, run for both), and
2. whether one slow SQLite write stalls other requests: while a client
   pushes a large job list (one long write transaction), another client
   polls `GET /` every 20 ms; the script prints that client's worst and
   median latency during the push, beside its latency on an idle server.

    .venv/bin/python bench/serve_modes.py --push 200000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from classic_bench import start_server  # noqa: E402


def latency(url: str) -> float:
    t0 = time.perf_counter()
    urllib.request.urlopen(url + "/").read()
    return time.perf_counter() - t0


def run(mode: str, n_push: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp, mode)
        try:
            idle = [latency(url) for _ in range(50)]
            body = zlib.compress(json.dumps(
                {str(i): {"jobstage": 0, "jobcmd": ["sim", i]} for i in range(n_push)}).encode())
            done = threading.Event()
            push_time = [0.0]

            def push() -> None:
                t0 = time.perf_counter()
                urllib.request.urlopen(urllib.request.Request(
                    url + "/set", data=body, headers={"jobix": "1"}), timeout=600).read()
                push_time[0] = time.perf_counter() - t0
                done.set()

            t = threading.Thread(target=push)
            t.start()
            busy = []
            while not done.is_set():
                busy.append(latency(url))
                time.sleep(0.02)
            t.join()
        finally:
            server.terminate()
            server.wait()
    print(f"{mode:9s}: push of {n_push} jobs took {push_time[0]:.2f} s; GET / latency "
          f"idle median {1000 * statistics.median(idle):.1f} ms, during the push median "
          f"{1000 * statistics.median(busy):.1f} ms, worst {1000 * max(busy):.0f} ms "
          f"({len(busy)} requests)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--push", type=int, default=200_000, help="jobs in the slow push (default 200000)")
    args = ap.parse_args()
    for mode in ("threading", "eventlet"):
        run(mode, args.push)


if __name__ == "__main__":
    main()
