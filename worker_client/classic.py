"""The classic job-list protocol, for old scripts and old servers.

``ClassicClient(url, jobix)`` offers ask_for_job / update_job exactly as the
original worker scripts used them, plus push and init."""
from __future__ import annotations

import json
import zlib
from typing import Any

import requests

from .transport import PATIENT, check_url, kept_failing, session, unreachable


class ClassicClient:
    def __init__(self, url: str, jobix: int, timeout: float = 60.0,
                 retry_for: float = PATIENT) -> None:
        self.url = check_url(url)
        self.jobix = int(jobix)
        self.timeout = timeout
        self.retry_for = retry_for
        self._session = session(retry_for)  # the one retry policy (transport.py)

    def _call(self, path: str, body: Any = None) -> bytes:
        data = None if body is None else zlib.compress(json.dumps(body).encode())
        try:
            resp = self._session.request("GET" if data is None else "POST", self.url + path,
                                         data=data, headers={"jobix": str(self.jobix)},
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise unreachable(self.url, exc, self.retry_for, f"{path}: ") from None
        if resp.status_code >= 500:
            raise kept_failing(self.url, resp.status_code, self.retry_for, f"{path}: ")
        if resp.status_code >= 400:
            raise RuntimeError(f"{path}: HTTP {resp.status_code}: {resp.content[:300]!r}")
        return resp.content

    def init(self, *minutes: float) -> dict[str, float]:
        return json.loads(self._call("/init/" + "/".join(str(m) for m in minutes)))

    def push(self, jobs: dict[int, dict[str, Any]]) -> str:
        """jobs: {jobid: {"jobstage": int, "jobcmd": any}}."""
        return self._call("/set", {str(k): v for k, v in jobs.items()}).decode()

    def ask_for_job(self, job_stage: int, next_stage: int | None = None) -> Any:
        path = f"/get/{job_stage}" + ("" if next_stage is None else f"/{next_stage}")
        return json.loads(self._call(path))

    def update_job(self, jobid: int | str, next_stage: int, filename: str | None = None,
                   jobcmd: Any = None) -> str:
        body = None
        if filename is not None or jobcmd is not None:
            body = {k: v for k, v in (("filename", filename), ("jobcmd", jobcmd)) if v is not None}
        return self._call(f"/update_job/{jobid}/{next_stage}", body).decode()
