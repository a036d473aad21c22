"""Roles on a board and what each may do: the one table of permissions.

A board route declares the action it performs with ``@requires(action)``;
``api.auth.board_for_request`` checks the caller's role against ROLE_ACTIONS
for that declared action.  A board route without a declaration is refused
(tests/unit/test_roles.py walks ``app.url_map`` and fails on one), so adding
a route is one decorator line, e.g.::

    @bp.get("/boards/<name>/events")
    @requires("read")
    def events(name): ...
"""
from __future__ import annotations

from typing import Callable, TypeVar

ROLES = ("owner", "submitter", "worker", "viewer")

# Every action a board route may declare, as an error message says it.
ACTIONS = {
    "read": "read this board",
    "push": "push jobs", "cancel": "cancel jobs", "retry": "retry jobs",
    "priority": "change job priorities",
    "claim": "claim jobs", "heartbeat": "send heartbeats", "advance": "report jobs done",
    "fail": "report jobs failed", "release": "give claimed jobs back",
    "report": "report a pool's allocations",
    "settings": "change the board's settings and stages", "delete": "delete the board",
    "members": "manage the board's members", "tokens": "manage the board's tokens",
}

# Sets, not ranks: a worker cannot push, a submitter cannot claim.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "owner": frozenset(ACTIONS),
    "submitter": frozenset({"read", "push", "cancel", "retry", "priority"}),
    "worker": frozenset({"read", "claim", "heartbeat", "advance", "fail", "release",
                         "report"}),
    "viewer": frozenset({"read"}),
}

F = TypeVar("F", bound=Callable)


def requires(action: str) -> Callable[[F], F]:
    """Declare the action a board route performs (checked by the caller's
    role in board_for_request).  Put it under the route decorator."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")

    def mark(view: F) -> F:
        view.required_action = action  # type: ignore[attr-defined]
        return view
    return mark


def may(role: str | None, action: str) -> bool:
    return role is not None and action in ROLE_ACTIONS.get(role, ())


def roles_that_may(action: str) -> list[str]:
    return [r for r in ROLES if action in ROLE_ACTIONS[r]]


def check_role(role: str) -> str:
    """``role`` if it is one; else ValueError with a one-line message."""
    if role not in ROLE_ACTIONS:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role
