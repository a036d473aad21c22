"""The classic job-list protocol, for old scripts and old servers.

``ClassicClient(url, jobix)`` offers ask_for_job / update_job exactly as the
original worker scripts used them, plus push and init."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import zlib
from typing import Any


class ClassicClient:
    def __init__(self, url: str, jobix: int, timeout: float = 60.0,
                 retry_for: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.jobix = int(jobix)
        self.timeout = timeout
        self.retry_for = retry_for

    def _call(self, path: str, body: Any = None) -> bytes:
        data = None if body is None else zlib.compress(json.dumps(body).encode())
        deadline = time.monotonic() + self.retry_for
        delay = 0.25
        while True:
            req = urllib.request.Request(self.url + path, data=data,
                                         headers={"jobix": str(self.jobix)})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    return res.read()
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise RuntimeError(f"{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
                problem = f"HTTP {exc.code}"
            except OSError as exc:
                problem = str(exc)
            if time.monotonic() + delay > deadline:
                raise RuntimeError(f"{path}: {problem} (gave up after {self.retry_for:.0f} s)")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

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
