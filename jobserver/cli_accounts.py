"""`jobserver user ...` and `jobserver member ...`: accounts, their API
keys and their roles on boards, made where the server runs."""
from __future__ import annotations

import sys

import click

from .cli import _app, _board_or_fail, main
from .roles import ROLES

ROLE_CHOICE = click.Choice(ROLES)


def _user_or_fail(name: str):
    from . import lifecycle

    user = lifecycle.user_by_name(name)
    if user is None:
        raise click.ClickException(f"no user named {name!r} (jobserver user create {name})")
    return user


def _read_password() -> str:
    """From the terminal (asked twice), or the first line of stdin."""
    if sys.stdin.isatty():
        return click.prompt("password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.ClickException("--password: no password on stdin (give it on the first "
                                   "line, or run this at a terminal to be asked)")
    return line


@main.group(help="Users: accounts with API keys (and, with a password, the dashboard's "
                 "login).")
def user() -> None:
    pass


@user.command("create", help="Create a user; their first API key is printed alone on the last "
                             "line.")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An administrator: every board, creates users.")
@click.option("--password", "with_password", is_flag=True,
              help="Also set a password for the dashboard's login: asked at the terminal, or "
                   "read from the first line of stdin.")
def user_create(name: str, admin: bool, with_password: bool) -> None:
    from . import lifecycle

    password = _read_password() if with_password else None
    with _app(SWEEP_MODE="off").app_context():
        try:
            u = lifecycle.create_user(name, admin=admin, password=password)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
        key = lifecycle.issue_key(u.id, "created with the user")
    click.echo(f"user {u.name} created{' (admin)' if admin else ''}; their API key (keep it "
               "secret):")
    click.echo(key)


@user.command("list", help="Every user: name, admin, password set, active keys.")
def user_list() -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        users = lifecycle.list_users()
    if not users:
        click.echo("no users yet (jobserver user create NAME)")
        return
    width = max(len(u["name"]) for u in users)
    for u in users:
        click.echo(f"{u['name']:<{width}}  {'admin' if u['admin'] else 'user ':<5}  "
                   f"{'password' if u['password'] else 'no password':<11}  {u['keys']} key(s)")


@user.command("password", help="Set a user's dashboard password (asked, or read from stdin); "
                               "their open logins end.")
@click.argument("name")
def user_password(name: str) -> None:
    from . import lifecycle

    password = _read_password()
    with _app(SWEEP_MODE="off").app_context():
        try:
            lifecycle.set_password(_user_or_fail(name).id, password)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} set")


@user.group("key", help="A user's API keys: list, create, revoke.")
def key() -> None:
    pass


@key.command("create", help="A new API key for the user, printed alone on the last line.")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="A label for the key.")
def key_create(name: str, label: str) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        click.echo(lifecycle.issue_key(_user_or_fail(name).id, label))


@key.command("list", help="The user's keys (ids and labels; the secrets are not kept).")
@click.argument("name")
def key_list(name: str) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        for k in lifecycle.list_keys(_user_or_fail(name).id):
            click.echo(f"{k['id']}\t{'revoked' if k['revoked_at'] else 'active'}\t{k['name']}")


@key.command("revoke", help="Revoke one of the user's keys by its id (see `jobserver user key "
                            "list`).")
@click.argument("name")
@click.argument("key_id", type=int)
def key_revoke(name: str, key_id: int) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        try:
            lifecycle.revoke_key(_user_or_fail(name).id, key_id)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"key {key_id} of {name} revoked")


@main.group(help="Members of a board: users with a role (owner, submitter, worker, viewer).")
def member() -> None:
    pass


@member.command("add", help="Give a user a role on a board (or change their role).")
@click.argument("board_name")
@click.argument("user_name")
@click.option("--role", type=ROLE_CHOICE, required=True,
              help="owner: everything; submitter: push, cancel, retry, priorities; worker: "
                   "claim and report; viewer: read.")
def member_add(board_name: str, user_name: str, role: str) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(board_name)
        lifecycle.set_member(b.id, _user_or_fail(user_name).id, role)
    click.echo(f"{user_name} is {role} of {board_name}")


@member.command("list", help="A board's members and their roles.")
@click.argument("board_name")
def member_list(board_name: str) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        members = lifecycle.list_members(_board_or_fail(board_name).id)
    if not members:
        click.echo(f"board {board_name} has no members (jobserver member add {board_name} "
                   "USER --role viewer)")
    for m in members:
        click.echo(f"{m['user']}\t{m['role']}")


@member.command("remove", help="Take a user's role on a board away.")
@click.argument("board_name")
@click.argument("user_name")
def member_remove(board_name: str, user_name: str) -> None:
    from . import lifecycle

    with _app(SWEEP_MODE="off").app_context():
        b = _board_or_fail(board_name)
        try:
            lifecycle.remove_member(b.id, _user_or_fail(user_name).id)
        except lifecycle.LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{user_name} is no longer a member of {board_name}")
