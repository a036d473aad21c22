"""The `jobserver` command: serve, sweep, db upgrade, board, token, user, member, config."""
from __future__ import annotations

import logging
import sys

import click


def _app(**overrides):
    from . import create_app

    try:
        return create_app(overrides or None)
    except SystemExit as exc:  # a bad setting: one line, non-zero exit
        raise click.ClickException(str(exc)) from None


@click.group(help="jobserver: a central job board for massively parallel computing.\n\n"
                  "Settings come from JOBSERVER_* environment variables (for example "
                  "JOBSERVER_DATABASE_URL) and instance/jobserver.cfg.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per request or migration step is noise at scale
        for name in ("werkzeug", "alembic", "engineio", "socketio"):
            logging.getLogger(name).setLevel(logging.WARNING)


@main.command(help="Run the standalone server (WebSocket live updates, background sweeper).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="JOBSERVER_HOST",
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535),
              envvar="JOBSERVER_PORT", help="TCP port.")
@click.option("--async-mode", type=click.Choice(["eventlet", "threading"]), default="eventlet",
              show_default=True, envvar="JOBSERVER_ASYNC_MODE",
              help="eventlet: green threads, 2.4x the classic-loop throughput; threading: OS "
                   "threads, shorter stalls while a huge list is pushed (README: figures).")
def serve(host: str, port: int, async_mode: str) -> None:
    from .serving import run_standalone

    run_standalone(host, port, async_mode)


@main.command(help="Flag jobs that overstay their stage and requeue/fail them once, and "
                   "remove events older than EVENT_RETENTION_DAYS (for cron).")
def sweep() -> None:
    from . import lifecycle
    from .lifecycle import events

    app = _app(SWEEP_MODE="off")
    with app.app_context():
        r = lifecycle.sweep(lost_after=app.config["WORKER_LOST_AFTER"])
        pruned = events.prune(app.config["EVENT_RETENTION_DAYS"])
    click.echo(f"flagged {r.flagged}, requeued {r.requeued}, failed {r.failed}; "
               f"{pruned} old events removed")


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Create or upgrade the schema to the latest migration.")
def db_upgrade() -> None:
    app = _app(AUTO_MIGRATE=False, SWEEP_MODE="off")
    from . import upgrade_database

    upgrade_database(app)
    click.echo("database is at the latest schema: " + app.config["SQLALCHEMY_DATABASE_URI"])


def _lifetimes_arg(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        values = [float(m) for m in text.strip("/").split("/")]
    except ValueError:
        raise click.BadParameter(f"expected minutes like 0/30/0, got {text!r}") from None
    if any(not (0 <= m < float("inf")) for m in values):
        raise click.BadParameter("lifetimes are minutes >= 0 (0 = forever)")
    return values


def _board_or_fail(name: str):
    from . import lifecycle

    board = lifecycle.board_by_name(name)
    if board is None:
        raise click.ClickException(f"no board named {name!r} (jobserver board create {name})")
    return board


@main.group(help="Boards: create (API boards), list and delete (any board, classic ones too).")
def board() -> None:
    pass


@board.command("create", help="Create a board; its API token is printed alone on the last line.")
@click.argument("name")
@click.option("--lifetimes", help="Minutes per stage, as in /init: e.g. 0/30/0 (0 = forever); an "
                                  "odd number of stages, ending on a resting one "
                                  "[default: 0/30/0: waiting, running, done].")
@click.option("--stage-names", help="Names per stage, e.g. todo/running/done.")
@click.option("--max-attempts", type=click.IntRange(1), default=3, show_default=True,
              help="Attempts a job gets at each stage (failures and lost workers spend "
                   "them) before it is marked failed.")
@click.option("--max-running", type=click.IntRange(0), default=None,
              help="At most this many of the board's jobs running at once, however many "
                   "workers claim [default: no cap]. Change it later on the lifetimes page "
                   "or with PATCH /api/v1/boards/<name>.")
@click.option("--no-auto-requeue", is_flag=True,
              help="Only flag jobs that overstay (requeue them by hand).")
@click.option("--owner", metavar="USER", default=None,
              help="Make this user (jobserver user create) the board's owner.")
def board_create(name: str, lifetimes: str | None, stage_names: str | None,
                 max_attempts: int, max_running: int | None, no_auto_requeue: bool,
                 owner: str | None) -> None:
    from . import lifecycle

    app = _app(SWEEP_MODE="off")
    names = [n for n in (stage_names or "").strip("/").split("/") if n] if stage_names else []
    with app.app_context():
        owner_ref = None
        if owner is not None:
            owner_ref = lifecycle.user_by_name(owner)
            if owner_ref is None:
                raise click.ClickException(f"no user named {owner!r} (jobserver user create "
                                           f"{owner})")
        try:
            b = lifecycle.create_board(name, _lifetimes_arg(lifetimes), names,
                                       max_attempts=max_attempts,
                                       auto_requeue=not no_auto_requeue,
                                       max_running=max_running)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
        if owner_ref is not None:
            lifecycle.set_member(b.id, owner_ref.id, "owner")
        token = lifecycle.issue_token(b.id, "created with the board")
    click.echo(f"board {b.name} created; its token (keep it secret):")
    click.echo(token)


@board.command("list", help="Every board: name, kind, jobs, age.")
def board_list() -> None:
    import time

    from . import queries

    with _app(SWEEP_MODE="off").app_context():
        boards = queries.list_boards()
    if not boards:
        click.echo("no boards yet (jobserver board create NAME)")
        return
    width = max(len(b["name"]) for b in boards)
    for b in boards:
        kind = "classic" if b["classic"] else "api"
        click.echo(f"{b['name']:<{width}}  {kind:<7}  {b['jobs']:>9,} jobs  "
                   f"created {_age(time.time() - b['created_at'])} ago")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


@board.command("delete", help="Delete a board with all its jobs, history and tokens.")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def board_delete(name: str, yes: bool) -> None:
    from . import lifecycle, queries

    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(name)
        jobs = next(x["jobs"] for x in queries.list_boards() if x["id"] == b.id)
        if not yes:
            click.confirm(f"delete board {name} and its {jobs:,} jobs for good?", abort=True)
        n = lifecycle.delete_board(b.id)
    click.echo(f"board {name} deleted ({n:,} jobs)")


def _duration(value: str | None) -> float | None:
    from worker_client.terminal import parse_duration

    return parse_duration(value) if value else None


@main.group(help="API tokens of a board, each with a role: list, create, revoke.")
def token() -> None:
    pass


@token.command("list", help="The board's tokens: id, state, role, expiry, name (the secrets "
                            "are not kept).")
@click.argument("board_name")
def token_list(board_name: str) -> None:
    from . import lifecycle
    from worker_client.terminal import expiry_text

    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(board_name)
        for t in lifecycle.list_tokens(b.id):
            state = "revoked" if t["revoked_at"] else "active"
            click.echo(f"{t['id']}\t{state}\t{t['role']}\t{expiry_text(t['expires_at'])}\t"
                       f"{t['name']}")


@token.command("create", help="A new token for the board, printed alone on the last line.")
@click.argument("board_name")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@click.option("--role", type=click.Choice(["owner", "submitter", "worker", "viewer"]),
              default="owner", show_default=True,
              help="owner: everything; submitter: push, cancel, retry, priorities; worker: "
                   "claim and report; viewer: read.")
@click.option("--expires", metavar="DURATION", default=None,
              callback=lambda ctx, param, value: _duration(value),
              help="Stop working after this long: 7d, 12h, 30m, 3600 (seconds) "
                   "[default: never].")
def token_create(board_name: str, name: str, role: str, expires: float | None) -> None:
    import time

    from . import lifecycle

    expires_at = time.time() + expires if expires else None
    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(board_name)
        click.echo(lifecycle.issue_token(b.id, name, role, expires_at))


@token.command("revoke", help="Revoke a token by its id (see `jobserver token list`).")
@click.argument("board_name")
@click.argument("token_id", type=int)
def token_revoke(board_name: str, token_id: int) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(board_name)
        try:
            lifecycle.revoke_token(b.id, token_id)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"token {token_id} revoked")


@main.command("config", help="Print the effective settings (secrets left out) as JSON: those "
                             "`jobserver serve` runs with, or with --wsgi those of wsgi.py "
                             "under Apache mod_wsgi.")
@click.option("--wsgi", is_flag=True, help="The settings of wsgi.py (mod_wsgi) instead.")
def show_config(wsgi: bool) -> None:
    import os

    from .config import _parse, describe

    app = _app(AUTO_MIGRATE=False, SWEEP_MODE="off")
    if wsgi:  # what wsgi.py sets
        shown = {"ASYNC_MODE": "threading", "WEBSOCKET": False, "SWEEP_MODE": "request"}
    else:  # what serving.run_standalone sets, whatever the file or environment say
        shown = {"SWEEP_MODE": "thread", "WEBSOCKET": True,
                 "ASYNC_MODE": os.environ.get("JOBSERVER_ASYNC_MODE", "eventlet")}
    # not applied here (printing settings must not touch the database)
    shown["AUTO_MIGRATE"] = _parse(os.environ.get("JOBSERVER_AUTO_MIGRATE", "true"), True)
    click.echo(describe(app, shown))


from . import cli_accounts  # noqa: E402,F401  (user, member)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
