"""`jobworker token ...` and `jobworker share`: a board's tokens with a
role (one for a pool of workers, say) and read-only share links, made with
an owner's token.  Registered on the `jobworker` group by :mod:`.cli`."""
from __future__ import annotations

import click

from .cli import Ctx, _fail_cleanly, main
from .terminal import expiry_text, parse_duration

ROLES = ("owner", "submitter", "worker", "viewer")


def duration(ctx: click.Context, param: click.Parameter, text: str | None) -> float | None:
    """A click callback: '7d', '12h', '30m', '90s', '2w' or plain seconds."""
    return None if text is None else parse_duration(text)


@main.group(help="The board's tokens, each with a role (needs an owner's token).")
def token() -> None:
    pass


@token.command("create", help="A new token of the board, printed alone on the last line: e.g. "
                              "--role worker for a pool of workers.")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="owner: everything; submitter: push, cancel, retry, priorities; worker: "
                   "claim, heartbeat, advance, fail, release; viewer: read.")
@click.option("--expires", metavar="DURATION", callback=duration, default=None,
              help="Stop working after this long: 7d, 12h, 30m, 3600 (seconds) "
                   "[default: never].")
@click.option("--name", default="jobworker", show_default=True, help="A label for the token.")
@click.pass_obj
@_fail_cleanly
def token_create(obj: Ctx, role: str, expires: float | None, name: str) -> None:
    made = obj.client().create_token(role, name, expires)
    click.echo(f"token {made['id']} ({role}, {expiry_text(made['expires_at'])}) of board "
               f"{obj.board}:", err=True)
    click.echo(made["token"])


@token.command("list", help="The board's tokens and share links (ids, roles, expiry; the "
                            "secrets are not kept).")
@click.pass_obj
@_fail_cleanly
def token_list(obj: Ctx) -> None:
    for t in obj.client().tokens():
        state = "revoked" if t["revoked_at"] else "active"
        click.echo(f"{t['id']}\t{state}\t{t['role']}\t{expiry_text(t['expires_at'])}\t{t['name']}")


@token.command("revoke", help="Revoke a token or share link by its id (see `jobworker token "
                              "list`): refused everywhere within a second.")
@click.argument("token_id", type=click.IntRange(0))
@click.pass_obj
@_fail_cleanly
def token_revoke(obj: Ctx, token_id: int) -> None:
    obj.client().revoke_token(token_id)
    click.echo(f"token {token_id} revoked")


@main.command(help="A read-only link to the board's pages, printed alone on the last line "
                   "(instead of handing out the dashboard's password); revoke it with "
                   "`jobworker token revoke ID`.")
@click.option("--expires", metavar="DURATION", callback=duration, default=None,
              help="Stop working after this long: 7d, 12h, 30m [default: never].")
@click.option("--name", default="share link", show_default=True, help="A label for the link.")
@click.pass_obj
@_fail_cleanly
def share(obj: Ctx, expires: float | None, name: str) -> None:
    made = obj.client().share_link(expires, name)
    click.echo(f"share link {made['id']} of board {obj.board} ({expiry_text(made['expires_at'])}; "
               f"revoke: jobworker token revoke {made['id']}):", err=True)
    click.echo(made["url"])
