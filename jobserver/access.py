"""Who may view the dashboard, and which boards.

``VIEW_PASSWORD`` empty (the default): the pages are open to anyone who can
reach the server, every board.  Set it and a page opens to:

- the viewer password, over HTTP Basic (any user name): every board;
- a logged-in user (/login, a Flask session; the password checked by
  werkzeug.security): the boards they are a member of (an admin: all);
- a share link (/s/<token>: a board's viewer token, kept in a cookie
  scoped to that board): that board only, until the token is revoked.

Job payloads often hold paths and parameters: on a shared cluster, set a
password (and serve over HTTPS).  The classic protocol keeps its jobix, the
API its bearer tokens.
"""
from __future__ import annotations

import hmac
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from typing import TYPE_CHECKING, Any, Callable

from flask import Response, current_app, render_template, request, session
from werkzeug.exceptions import Forbidden

if TYPE_CHECKING:
    from .lifecycle import UserRef

SHARE_COOKIE = "jobserver_share_"  # + the board's id: one cookie per shared board
MAX_SHARE_COOKIES = 20  # read at most this many (a request's cookies are the client's)


@dataclass(frozen=True)
class Viewer:
    """Who looks at the pages: ``boards`` None means every board."""
    kind: str  # "open", "password", "user", "share"
    boards: frozenset[int] | None
    user: str | None = None

    def sees(self, board_id: int) -> bool:
        return self.boards is None or board_id in self.boards


def _password_ok() -> bool:
    password = current_app.config.get("VIEW_PASSWORD") or ""
    auth = request.authorization
    # bytes: compare_digest refuses str with non-ASCII characters
    return bool(auth and auth.password is not None
                and hmac.compare_digest(auth.password.encode(), password.encode()))


def logged_in() -> tuple[UserRef, str] | None:
    """The session's user (a UserRef) and a fingerprint of their password
    hash, if the session is still good (the user there, the password the
    one they logged in with)."""
    from . import lifecycle

    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    found = lifecycle.session_user(uid)
    if found is None or found[1] is None:
        return None
    user, pw_hash = found
    if not hmac.compare_digest(str(session.get("pw", "")), fingerprint(pw_hash)):
        return None
    return user, pw_hash


def fingerprint(pw_hash: str) -> str:
    """What the session keeps of the password hash: a change of password
    ends the sessions opened with the old one."""
    import hashlib

    return hashlib.sha256(pw_hash.encode()).hexdigest()[:16]


def share_boards() -> set[int]:
    """The boards of the request's share cookies whose tokens still work."""
    from .api.auth import cached_grant, expired
    from .lifecycle import BoardGrant

    found: set[int] = set()
    names = [n for n in request.cookies if n.startswith(SHARE_COOKIE)][:MAX_SHARE_COOKIES]
    for name in names:
        grant = cached_grant(request.cookies[name])
        if (isinstance(grant, BoardGrant) and not expired(grant)
                and name == SHARE_COOKIE + str(grant.board.id)):
            found.add(grant.board.id)
    return found


def viewer() -> Viewer | None:
    """Who the request is, for the pages; None: nobody they may see."""
    if not current_app.config.get("VIEW_PASSWORD"):
        return Viewer("open", None)
    if _password_ok():
        return Viewer("password", None)
    boards: set[int] = set()
    user_name = None
    who = logged_in()
    if who is not None:
        from . import lifecycle

        user = who[0]
        user_name = user.name
        if user.admin:
            return Viewer("user", None, user_name)
        boards = lifecycle.member_boards(user.id)
    shared = share_boards()
    if who is None and not shared:
        return None
    return Viewer("user" if who is not None else "share", frozenset(boards | shared), user_name)


def allowed() -> bool:
    """Some page may be shown (the home page, the live connection)."""
    return viewer() is not None


def challenge() -> Response:
    """401: the viewer password over HTTP Basic; a browser is shown the
    login form too (after it cancels the password prompt)."""
    if request.accept_mimetypes.accept_html and request.method == "GET":
        body = render_template("login.html", next=request.full_path.rstrip("?"), error=None,
                               challenged=True)
        return Response(body, 401, {"WWW-Authenticate": 'Basic realm="jobserver dashboard"'},
                        mimetype="text/html")
    return Response("This dashboard needs the viewer password (JOBSERVER_VIEW_PASSWORD), "
                    "a login (/login) or a share link.\n",
                    401, {"WWW-Authenticate": 'Basic realm="jobserver dashboard"'},
                    mimetype="text/plain")


def guard() -> Response | None:
    """A before_request hook of the board pages: None lets the request
    through; a board the viewer may not see is refused (403)."""
    v = viewer()
    if v is None:
        return challenge()
    name = (request.view_args or {}).get("name")
    if name is not None and v.boards is not None:
        from . import lifecycle

        board = lifecycle.board_by_name(name)
        if board is None or not v.sees(board.id):
            # the same answer for a board that does not exist: names stay private
            raise Forbidden(f"board {name!r} is not shared with you: log in as one of its "
                            "members or open its share link")
    return None


def share_cookie_max_age(expires_at: float | None) -> int:
    """Seconds the share cookie lives: until the token expires, else 30 days."""
    if expires_at is None:
        return 30 * 86400
    return max(math.ceil(expires_at - time.time()), 0)


WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def same_origin_writes() -> None:
    """A before_request hook: a browser's write from another site's page is
    refused.  Browsers send ``Origin`` with every cross-site write (and with
    same-site POSTs); scripts and workers send none and are not affected."""
    if request.method not in WRITES:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    try:
        host = urlsplit(origin).netloc.lower()
    except ValueError:  # not a URL at all
        host = ""
    if origin == "null" or host != request.host.lower():
        raise Forbidden(f"a write from a page of another site ({origin[:100]}) is refused")


def still_sees(app: Any, headers: dict[str, str], board_id: int) -> Callable[[], bool]:
    """A check that the viewer of this request (its password, login or
    share cookie, from ``headers``) still sees the board: asked again while
    a page's stream runs, so that a revoked share link or a removed member
    stops it."""
    def check() -> bool:
        with app.test_request_context(headers=headers):
            v = viewer()
            return v is not None and v.sees(board_id)
    return check
