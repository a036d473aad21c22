"""Long-poll claims: what 1,000 idle waiting workers cost a server process,
and how fast a push wakes one of them.

Starts `jobserver serve` (eventlet, the default; SQLite unless --database),
opens N connections from a few client processes (asyncio, raw HTTP/1.1
keep-alive), each repeating `claim` with "wait" on an empty board (the
first waits spread over (0.5, wait] so that renewals come evenly, as from
workers started at different times), then reads the server's CPU time
from /proc/<pid>/stat over a window.  Then it pushes one job and prints
how long after the push answered a waiter had it.

    .venv/bin/python bench/longpoll_bench.py [--waiters 1000] [--wait 30] [--window 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "bench-admin"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, instance: Path, database: str | None, mode: str) -> subprocess.Popen:
    env = dict(os.environ, JOBSERVER_INSTANCE=str(instance), JOBSERVER_ADMIN_TOKEN=ADMIN,
               JOBSERVER_SWEEP_INTERVAL="5")
    env.pop("JOBSERVER_DATABASE_URL", None)
    if database:
        env["JOBSERVER_DATABASE_URL"] = database
    cmd = [sys.executable, "-m", "jobserver", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if mode != "eventlet":
        cmd += ["--async-mode", mode]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(instance / "server.log", "wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("the server did not start: see " + str(instance / "server.log"))


async def _waiter(port: int, board: str, token: str, name: str, wait: float,
                  ready: list, got: "mp.Queue[float]") -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = True
    while True:
        w = random.uniform(0.5, wait) if first else wait
        body = json.dumps({"stage": 0, "worker": name, "wait": w}).encode()
        writer.write(f"POST /api/v1/boards/{board}/claim HTTP/1.1\r\nHost: bench\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        if first:
            ready.append(1)
            first = False
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answer = json.loads(await reader.readexactly(length))
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{head[:40]!r}: {answer}")
        if answer["jobs"]:
            got.put(time.time())


def client_process(port: int, board: str, token: str, n: int, wait: float, index: int,
                   up: "mp.Queue[int]", got: "mp.Queue[float]") -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        ready: list = []
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(
                _waiter(port, board, token, f"bench-{index}-{i}", wait, ready, got)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not flood the listen queue
        while len(ready) < n:
            await asyncio.sleep(0.05)
        up.put(n)
        await asyncio.gather(*tasks)

    asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--waiters", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--wait", type=float, default=30.0, help="each claim's wait (seconds)")
    p.add_argument("--window", type=float, default=30.0, help="CPU measured over (seconds)")
    p.add_argument("--database", default=None, help="a database URL [a fresh SQLite file]")
    p.add_argument("--mode", default="eventlet", choices=["eventlet", "threading"])
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(port, Path(tmp), args.database, args.mode)
        procs = []
        try:
            url = f"http://127.0.0.1:{port}"
            name = f"longpoll{os.getpid()}"
            r = requests.post(f"{url}/api/v1/boards", json={"name": name},
                              headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
            r.raise_for_status()
            token = r.json()["token"]
            ctx = mp.get_context("spawn")
            up, got = ctx.Queue(), ctx.Queue()
            share = [args.waiters // args.clients + (i < args.waiters % args.clients)
                     for i in range(args.clients)]
            t0 = time.monotonic()
            procs = [ctx.Process(target=client_process, daemon=True,
                                 args=(port, name, token, n, args.wait, i, up, got))
                     for i, n in enumerate(share) if n]
            for proc in procs:
                proc.start()
            for _ in procs:
                up.get(timeout=120)
            print(f"{args.waiters} claims waiting after {time.monotonic() - t0:.1f} s "
                  f"({args.mode}, {'SQLite' if not args.database else args.database})")
            time.sleep(1.0)  # the connection burst's work is done
            c0, w0 = cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.window)
            used, spent = cpu_seconds(server.pid) - c0, time.monotonic() - w0
            share_ = used / spent
            print(f"idle: server CPU {used:.3f} s over {spent:.1f} s = {100 * share_:.2f}% of a "
                  f"core ({args.waiters} waiting claims, wait {args.wait:g} s: "
                  f"{args.waiters / args.wait:.0f} renewals/s)")
            lat = []
            for i in range(5):
                start = time.time()
                requests.post(f"{url}/api/v1/boards/{name}/jobs", json=[{"key": f"j{i}"}],
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)
                answered = time.time()
                taken = got.get(timeout=30)
                lat.append((taken - start, taken - answered))
                time.sleep(0.3)
            after = 1000 * sorted(b for _, b in lat)[2]
            print("wake: a push to the first waiter with its job: "
                  + ", ".join(f"{1000 * a:.1f} ms" for a, _ in lat)
                  + f" (after the push answered: median {after:.1f} ms)")
            print(f"RESULT idle_cpu_percent={100 * share_:.2f} "
                  f"wake_ms_median={1000 * sorted(a for a, _ in lat)[2]:.1f}")
        finally:
            for proc in procs:
                proc.terminate()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
