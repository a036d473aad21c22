"""The scale-out path: the real server on PostgreSQL, concurrent classic
and API workers, no duplicates."""
from __future__ import annotations

import collections

import requests

from tests.conftest import ADMIN, POSTGRES_URL, _fresh_postgres, _postgres_available, require, start_live_server
from worker_client import Client

from .helpers import counts, push_jobs
from .test_classic_workers import claimed_ids, run_workers


def test_server_on_postgresql(tmp_path):
    require(_postgres_available(), f"no PostgreSQL at {POSTGRES_URL}")
    _fresh_postgres()
    server = start_live_server(tmp_path, JOBSERVER_DATABASE_URL=POSTGRES_URL)
    try:
        url = server.url
        requests.get(f"{url}/init/60/60/0", headers={"jobix": "8"}).raise_for_status()
        push_jobs(url, 8, 600)
        ids = claimed_ids(run_workers(url, 8, 8))
        assert [k for k, c in collections.Counter(ids).items() if c > 1] == []
        assert sorted(ids) == list(range(600))
        assert counts(url, 8) == {0: 0, 1: 0, 2: 600}

        r = requests.post(f"{url}/api/v1/boards", headers=ADMIN, json={"name": "pg", "lifetimes": [0, 5, 0]})
        c = Client(url, "pg", r.json()["token"])
        assert c.push({"key": f"p{i}", "payload": i} for i in range(300)) == {
            "created": 300, "existing": 0, "changed": 0, "changed_keys": []}
        while jobs := c.claim(0, 50):
            c.advance(jobs)
        assert c.status()["counts"] == {2: 300}
        assert requests.get(f"{url}/boards/pg").status_code == 200
    finally:
        server.stop()
