"""Settings: built-in defaults, then ``instance/jobserver.cfg``, then
``JOBSERVER_*`` environment variables, then the mapping given to create_app."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import Any, Mapping

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

DEFAULTS: dict[str, Any] = {
    # The database; None means an SQLite file in the instance folder.
    "DATABASE_URL": None,
    "SECRET_KEY": "dev-not-secret",
    # Apply Alembic migrations when the app starts.
    "AUTO_MIGRATE": True,
    # How lifetimes are enforced: "thread" (a background sweeper, for the
    # standalone server), "request" (a rate-limited sweep run by incoming
    # requests, for mod_wsgi) or "off" (cron runs `jobserver sweep`).
    "SWEEP_MODE": "request",
    "SWEEP_INTERVAL": 5.0,
    # Seconds without a heartbeat (or claim) after which an API worker is lost.
    "WORKER_LOST_AFTER": 60.0,
    # If set, creating a board through the API needs this bearer token.
    "ADMIN_TOKEN": "",
    # If set, the dashboard pages ask for this password (HTTP Basic).
    "VIEW_PASSWORD": "",
    # Seconds between two live updates of one board (the coalescing window).
    "LIVE_INTERVAL": 0.5,
    # Seconds a claim with "wait" is held at most (the API accepts up to 60):
    # lower it behind a proxy whose read timeout is shorter.
    "CLAIM_WAIT_MAX": 60.0,
    # Several server processes: Socket.IO's message queue (e.g.
    # redis://127.0.0.1:6379/0), so that a page on one process sees the
    # work done through the others; empty: one process.
    "MESSAGE_QUEUE": "",
    # Whether the Socket.IO server lets clients upgrade to WebSocket
    # (mod_wsgi cannot carry WebSocket: it must be False there).
    "WEBSOCKET": True,
    # Socket.IO async mode: "threading" or "eventlet".
    "ASYNC_MODE": "threading",
    # SQLite busy timeout (seconds).
    "SQLITE_TIMEOUT": 30.0,
    # Rows per page of the job table.
    "PAGE_SIZE": 50,
    # Request bodies: the raw size (a million-job push fits, compressed or
    # not) and what a zlib/gzip body may inflate to, in megabytes.
    "MAX_BODY_MB": 256.0,
    "MAX_DECODED_MB": 512.0,
    # ... and at most this many times its compressed size (beyond 16 MB).
    "MAX_INFLATE_RATIO": 50.0,
    # The standalone (eventlet) server: seconds after which an idle or slow
    # connection is closed, and how many may be open at once.
    "CONNECTION_TIMEOUT": 60.0,
    "MAX_CONNECTIONS": 10000,
    # The largest job payload (its JSON), in kilobytes.
    "MAX_PAYLOAD_KB": 1024.0,
    # Days the event log keeps an event (0: forever); older cursors get 410.
    "EVENT_RETENTION_DAYS": 30.0,
    # The event stream (Server-Sent Events): seconds between two keep-alive
    # comments, and after which a stream ends (EventSource and
    # `jobworker events --follow` reconnect from the last event they saw;
    # a proxy's read timeout should be above the first).
    "SSE_HEARTBEAT": 15.0,
    "SSE_MAX_SECONDS": 300.0,
    # Live logs (what running jobs print, sent with the heartbeats): bytes
    # kept per attempt and per board; past either, the oldest part is
    # dropped and a reader sees a line saying how much.  0: keep none.
    "LOG_MAX_PER_JOB": 1 << 20,
    "LOG_MAX_PER_BOARD": 256 << 20,
}

ENV_PREFIX = "JOBSERVER_"


def _parse(value: str, default: Any) -> Any:
    """Parse an environment string into the type of its default."""
    if isinstance(default, bool):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if isinstance(default, float):
        return float(value)
    if isinstance(default, int):
        return int(value)
    return value


def load_config(app: Flask, config: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment
    and finally ``config``."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("jobserver.cfg", silent=True)
    for key, default in DEFAULTS.items():
        raw = os.environ.get(ENV_PREFIX + key)
        if raw is not None:
            try:
                app.config[key] = _parse(raw, default)
            except ValueError as exc:
                raise SystemExit(f"{ENV_PREFIX}{key}: {exc}") from None
    if config:
        app.config.update(config)

    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_BODY_MB"] * (1 << 20))
    app.config["NAME_SECRET"] = _name_secret(app)
    if app.config["SECRET_KEY"] == DEFAULTS["SECRET_KEY"]:
        # the login cookie is signed with this: never with a well-known
        # default; derived from the instance's random secret instead
        app.config["SECRET_KEY"] = hmac.new(app.config["NAME_SECRET"], b"session cookies",
                                            hashlib.sha256).hexdigest()
    app.config["SESSION_COOKIE_NAME"] = "jobserver_login"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    url = app.config["DATABASE_URL"]
    if not url:
        os.makedirs(app.instance_path, exist_ok=True)
        url = "sqlite:///" + os.path.join(app.instance_path, "jobserver.sqlite")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = False
    if url.startswith("sqlite"):
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault(
            "connect_args",
            {"timeout": app.config["SQLITE_TIMEOUT"], "check_same_thread": False},
        )


def _name_secret(app: Flask) -> bytes:
    """The key of classic boards' public names: JOBSERVER_NAME_SECRET, or a
    random one kept in the instance folder (created at first start; every
    process of one deployment must see the same folder or the same variable)."""
    given = os.environ.get(ENV_PREFIX + "NAME_SECRET")
    if given:
        return given.encode()
    path = os.path.join(app.instance_path, "name-secret")
    if not os.path.exists(path):
        # written whole under another name, then linked into place: a
        # process starting at the same moment reads a whole secret or none
        try:
            os.makedirs(app.instance_path, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(secrets.token_hex(32).encode())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: theirs holds
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise SystemExit(f"cannot create {path} ({exc}): make the instance folder "
                             "writable or set JOBSERVER_NAME_SECRET") from None
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < 32:
        raise SystemExit(f"{path} holds no usable secret (delete it to make a new one, "
                         "or set JOBSERVER_NAME_SECRET)")
    return secret


def describe(app: Flask, overrides: Mapping[str, Any] | None = None) -> str:
    """A secret-free summary of the effective settings (``overrides``: what
    the server mode sets over the configuration)."""
    shown = {k: app.config[k] for k in DEFAULTS
             if k not in ("SECRET_KEY", "ADMIN_TOKEN", "VIEW_PASSWORD", "NAME_SECRET")}
    shown["DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    shown.update(overrides or {})
    for secret in ("ADMIN_TOKEN", "VIEW_PASSWORD"):
        shown[secret] = "(set)" if app.config.get(secret) else "(not set)"
    return json.dumps(shown, default=str, indent=2)


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session (the dashboard's login), opened only
    when the request carries its cookie: the API and the workers send none,
    and opening one costs a request a serializer (measured: about 4% of a
    claim's server time)."""

    def open_session(self, app, request):  # type: ignore[override]
        if app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return self.session_class()  # empty; saved only if a view writes to it
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:  # type: ignore[override]
        if not session and not session.modified and not session.accessed:
            return None  # the API's requests: nothing to do
        return super().save_session(app, session, response)


NoSessions = CookieSessions  # its earlier name (bench/bare_flask.py)
