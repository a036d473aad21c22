"""Small helpers for talking the classic protocol to a live server."""
from __future__ import annotations

import json
import zlib

import requests


def push_jobs(url: str, jobix: int, n: int, stage: int = 0, start: int = 0) -> None:
    jobs = {str(i): {"jobstage": stage, "jobcmd": {"n": i}} for i in range(start, start + n)}
    r = requests.post(f"{url}/set", data=zlib.compress(json.dumps(jobs).encode()),
                      headers={"jobix": str(jobix)}, timeout=60)
    r.raise_for_status()


def summary(url: str, jobix: int) -> dict:
    r = requests.get(f"{url}/get", headers={"jobix": str(jobix)}, timeout=30)
    r.raise_for_status()
    return r.json()["summary"]


def counts(url: str, jobix: int) -> dict[int, int]:
    return {s["stage"]: s["count"] for s in summary(url, jobix)["stages"]}
