"""`jobworker events`: the board's event log, one line per event as a
person reads it (or JSON lines), optionally followed as it grows.
Registered on the `jobworker` group by :mod:`.cli`."""
from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import Ctx, _fail_cleanly, main

KINDS = ("pushed", "claimed", "advanced", "done", "released", "flagged", "requeued", "failed",
         "cancelled", "retried", "blocked", "unblocked", "worker-alive", "worker-lost",
         "worker-stopped", "event", "log", "var")


def event_line(e: dict[str, Any]) -> str:
    """``2026-11-26 07:02:11  claimed         sim/7  stage 0  worker w1, attempt 12``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
    detail = e.get("detail")
    what: list[str] = []
    if e.get("key") is not None:
        what.append(e["key"])
    elif isinstance(detail, dict) and detail.get("worker"):
        what.append(f"worker {detail['worker']}")
    if e.get("stage") is not None:
        what.append(f"stage {e['stage']}")
    if (e.get("count") or 1) > 1:
        what.append(f"{e['count']} jobs")
    if e["kind"] in ("event", "log", "var") and isinstance(detail, dict):
        # the job's own @event=[name:message], @log=[message], @var=[name:value]
        name = detail.get("name")
        text = detail.get("message", detail.get("value", ""))
        what.append(f"{name}: {text}" if name else str(text))
    elif isinstance(detail, dict):
        extra = {k: v for k, v in detail.items() if v is not None and not (
            k == "worker" and e.get("key") is None)}
        if extra:
            what.append(", ".join(f"{k} {v}" for k, v in extra.items()))
    elif detail is not None:
        what.append(str(detail))
    return f"{when}  {e['kind']:<15} {'  '.join(what)}".rstrip()


@main.command(epilog="""\b
Examples:
  jobworker events                      everything the server keeps
  jobworker events --follow --after now what happens from now on
  jobworker events --type failed --type requeued sim/42
  jobworker events --json | jq .kind""")
@click.argument("key", required=False)
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing events as they happen (Ctrl-C to stop).")
@click.option("--type", "types", multiple=True, type=click.Choice(KINDS), metavar="KIND",
              help=f"Only events of this kind (repeatable): {', '.join(KINDS)}.")
@click.option("--after", default=None, metavar="CURSOR",
              help="Start after this cursor (printed with --json), or 'now'. "
                   "Default: the oldest event the server keeps.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line, with its 'cursor'.")
@click.pass_obj
@_fail_cleanly
def events(obj: Ctx, key: str | None, follow: bool, types: tuple[str, ...], after: str | None,
           as_json: bool) -> None:
    """The board's event log (of one job with KEY): pushes, claims, reports,
    failures, retries, workers coming and going, the jobs' own @event lines."""
    client = obj.client(patient=follow)
    try:
        while True:
            page = client.events(after, types, key, wait=30 if follow else 0, limit=1000)
            for e in page["events"]:
                click.echo(json.dumps(e) if as_json else event_line(e))
            after = page["next_cursor"]
            if not page["events"] and not follow:
                return
    except KeyboardInterrupt:
        return
