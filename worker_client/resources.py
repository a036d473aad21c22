"""CPU / memory / host sampling for heartbeats (psutil)."""
from __future__ import annotations

import os
import socket
import time
from typing import Any

import psutil


class ProcessSampler:
    """Samples one job's process tree: CPU % since the last sample, resident
    memory, run time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.time()
        self._procs: dict[int, psutil.Process] = {}

    def sample(self) -> dict[str, Any]:
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        cpu = 0.0
        rss = 0
        for p in tree:
            known = self._procs.setdefault(p.pid, p)  # keeps cpu_percent's baseline
            try:
                cpu += known.cpu_percent(None)
                rss += known.memory_info().rss
            except psutil.Error:
                self._procs.pop(p.pid, None)
        return {"host": socket.gethostname(), "pid": self.pid, "cpu_percent": round(cpu, 1),
                "rss_bytes": rss, "runtime_s": round(time.time() - self.started, 1)}


def host_sample() -> dict[str, Any]:
    """The worker process and its machine."""
    me = psutil.Process(os.getpid())
    vm = psutil.virtual_memory()
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cpu_percent": psutil.cpu_percent(None), "load": os.getloadavg()[0],
            "memory_used_percent": vm.percent, "worker_rss_bytes": me.memory_info().rss}
