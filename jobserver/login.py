"""The dashboard's doors: the login form (a Flask session; the password
checked by werkzeug.security), logout, and share links (/s/<token>)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from werkzeug.exceptions import BadRequest, NotFound

from . import access, lifecycle
from .lifecycle.accounts import MAX_PASSWORD

bp = Blueprint("login", __name__)


@bp.app_context_processor
def _who() -> dict[str, object]:
    """The logged-in user's name for the header (only when a login cookie
    came with the request: no query otherwise)."""
    if "uid" not in session:
        return {"login_user": None}
    who = access.logged_in()
    return {"login_user": who[0].name if who else None}


def _next() -> str:
    """Where to go after logging in: a path of this site only (no control
    character or space, which browsers drop: "/\t/evil.com" is "//evil.com"
    to them; no scheme, no host)."""
    target = (request.values.get("next") or "/")[:2000]
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target)):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@bp.get("/login")
def login_form():
    return render_template("login.html", next=_next(), error=None, challenged=False)


@bp.post("/login")
def login():
    name = (request.form.get("name") or "")[:100]
    password = request.form.get("password") or ""
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"a password is at most {MAX_PASSWORD} characters")
    found = lifecycle.check_login(name, password)
    if found is None:
        body = render_template("login.html", next=_next(), challenged=False,
                               error="Wrong user name or password.")
        return Response(body, 401, mimetype="text/html")
    user, pw_hash = found
    session.clear()
    session["uid"] = user.id
    session["pw"] = access.fingerprint(pw_hash)
    session.permanent = True
    return redirect(_next(), 303)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("login.login_form"), 303)


@bp.get("/s/<token>")
def share_link(token: str):
    """Open a share link: its viewer token goes into a cookie for that
    board's pages, then the board's page opens."""
    grant = lifecycle.grant_for_token(token[:200]) if token.startswith("jsb_") else None
    if grant is None or grant.role != "viewer":
        raise NotFound("this share link was revoked or never existed: ask the board's owner "
                       "for a new one")
    max_age = access.share_cookie_max_age(grant.expires_at)
    if max_age <= 0:
        raise NotFound("this share link has expired: ask the board's owner for a new one")
    resp = redirect(url_for("dashboard.board_page", name=grant.board.name), 303)
    resp.set_cookie(access.SHARE_COOKIE + str(grant.board.id), token, max_age=max_age,
                    httponly=True, samesite="Lax", secure=request.is_secure)
    return resp
