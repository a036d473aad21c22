#!/usr/bin/env python3
"""What the event log costs the hot path: the scaling benchmark's loops
(classic, API single-job, API batch) on SQLite and on PostgreSQL (one
process each), run alternately with the code before the event log and with
this checkout, in one run.

    .venv/bin/python bench/events_bench.py
    .venv/bin/python bench/events_bench.py --rounds 3 --only sqlite

"Before" is a git worktree of ``--before`` (default: the parent of the
commit that added jobserver/lifecycle/events.py), made under /tmp and
reused.  Each round runs before, then after, so that a machine slowing
down or speeding up during the run touches both alike; the table gives the
median of the rounds and the ratio after / before (jobs/s: above 0.97 is
within "a few percent"; CPU ms per job: below 1.03).  PostgreSQL is
127.0.0.1:5432 (database scale_bench, dropped and made afresh each time).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classic_bench import ROOT  # noqa: E402
import scale_bench  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def before_tree(rev: str | None) -> tuple[str, str]:
    if rev is None:
        added = git("log", "--diff-filter=A", "--format=%H", "--",
                    "jobserver/lifecycle/events.py").splitlines()[-1]
        rev = added + "^"
    commit = git("rev-parse", "--short", rev)
    path = f"/tmp/jobserver-before-{commit}"
    if not os.path.isdir(path):
        git("worktree", "add", "--detach", path, commit)
    return path, commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=None, help="the revision to compare with")
    ap.add_argument("--rounds", type=int, default=2, help="before/after pairs (default 2)")
    ap.add_argument("--only", default="sqlite,pg1", help="set-ups (default sqlite,pg1)")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--batch-jobs", type=int, default=20_000)
    args = ap.parse_args()
    tree, commit = before_tree(args.before)
    ns = argparse.Namespace(jobs=args.jobs, batch_jobs=args.batch_jobs, batch=100, workers=16,
                            loops=list(scale_bench.LOOPS), async_mode="eventlet",
                            keepalive=False, pg_database="scale_bench")
    setups = [s.strip() for s in args.only.split(",") if s.strip()]
    runs: dict[tuple[str, str, str], list[scale_bench.Result]] = {}
    try:
        for r in range(args.rounds):
            for setup in setups:
                for which, code in (("before", tree), ("after", None)):
                    print(f"round {r + 1}: {setup}, {which}", file=sys.stderr, flush=True)
                    for res in scale_bench.run_setup(setup, ns, use_redis=False, tree=code):
                        runs.setdefault((setup, res.loop, which), []).append(res)
    finally:
        if any(s.startswith("pg") for s in setups):
            scale_bench.fresh_database("scale_bench", drop_only=True)
    print(f"events_bench: before = {commit}, after = "
          f"this checkout; {args.rounds} round(s), medians; {args.jobs} jobs single, "
          f"{args.batch_jobs} batch")
    print(f"{'set-up':14s} {'loop':7s} {'jobs/s before':>13s} {'after':>7s} {'ratio':>6s}  "
          f"{'CPU ms before':>13s} {'after':>7s} {'ratio':>6s}  {'dup/lost':>8s}")
    for setup in setups:
        for loop in scale_bench.LOOPS:
            b, a = runs.get((setup, loop, "before")), runs.get((setup, loop, "after"))
            if not b or not a:
                continue
            rb = statistics.median(x.rate for x in b)
            ra = statistics.median(x.rate for x in a)
            cb = statistics.median(x.cpu_ms for x in b)
            ca = statistics.median(x.cpu_ms for x in a)
            bad = sum(x.dupes + x.lost for x in a + b)
            print(f"{scale_bench.LABELS[setup]:14s} {loop:7s} {rb:13.0f} {ra:7.0f} "
                  f"{ra / rb:6.2f}  {cb:13.2f} {ca:7.2f} {ca / cb:6.2f}  {bad:>8d}")


if __name__ == "__main__":
    main()
