"""`jobworker bench`: throughput of a server, seen from workers."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Iterator

import requests

from .client import Client


def new_board(url: str, admin_token: str, lifetimes: list[float] | None = None) -> Client:
    """A fresh board of its own (creating one needs the server's admin token)."""
    name = "bench-" + uuid.uuid4().hex[:8]
    r = requests.post(f"{url}/api/v1/boards", json={"name": name,
                                                     "lifetimes": lifetimes or [0, 60, 0]},
                      headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    if r.status_code in (401, 403):
        raise RuntimeError(f"the server refused to create a board: {r.json().get('message')}")
    r.raise_for_status()
    return Client(url, name, r.json()["token"])


def drop_board(client: Client) -> None:
    """Delete a benchmark's board, so that they do not pile up on the server."""
    client._session.delete(f"{client.url}/api/v1/boards/{client.board}", timeout=600)


def bench_push(url: str, admin: str, n: int) -> float:
    client = new_board(url, admin)
    jobs = [{"key": str(i), "payload": {"i": i}} for i in range(n)]
    t0 = time.perf_counter()
    client.push(jobs)
    rate = n / (time.perf_counter() - t0)
    drop_board(client)
    return rate


def bench_batches(url: str, admin: str, n: int, clients: int, batch: int) -> float:
    master = new_board(url, admin)
    master.push({"key": str(i), "payload": i} for i in range(n))
    token = master._session.headers["Authorization"].split()[1]

    def work() -> None:
        c = Client(url, master.board, token)
        while True:
            jobs = c.claim(0, batch)
            if not jobs:
                return
            c.advance(jobs)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert master.status()["counts"] == {2: n}, master.status()
    drop_board(master)
    return n / elapsed


def bench_single(url: str, admin: str, n: int, clients: int) -> float:
    return bench_batches(url, admin, n, clients, 1)


def run_bench(url: str, admin: str, n: int, clients: int, batch: int) -> Iterator[str]:
    yield f"push {n} jobs: {bench_push(url, admin, n):,.0f} jobs/s"
    yield (f"batch lifecycle (claim/advance {batch}, {clients} clients): "
           f"{bench_batches(url, admin, n, clients, batch):,.0f} jobs/s")
    single = max(n // 10, 100)
    yield (f"single-job loop (claim 1/advance 1, {clients} clients, {single} jobs): "
           f"{bench_single(url, admin, single, clients):,.0f} jobs/s")
