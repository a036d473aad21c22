"""jobserver: a central job board for massively parallel computing.

Importing the package imports nothing heavy, so that `jobserver serve` can
let eventlet patch the standard library before Flask is loaded.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MIGRATIONS = str(HERE / "migrations")


def _asset_dir(name: str) -> str:
    """templates/ and static/ sit at the top of a checkout and inside the
    package once installed (setup.cfg maps them there)."""
    inside = HERE / name
    return str(inside if inside.is_dir() else HERE.parent / name)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, database (migrated), Socket.IO, blueprints."""
    from flask import Flask

    from .config import CookieSessions, load_config

    app = Flask(
        __name__,
        instance_path=os.environ.get("JOBSERVER_INSTANCE") or None,
        instance_relative_config=True,
        template_folder=_asset_dir("templates"),
        static_folder=_asset_dir("static"),
    )
    load_config(app, config)
    app.session_interface = CookieSessions()  # the dashboard's login only

    from . import access, api, classic, dashboard, errors, follow, live, login, sweeper
    from .dialect import tune_engine
    from .extensions import db, migrate, socketio

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    with app.app_context():
        tune_engine(db.engine)
        if app.config["AUTO_MIGRATE"]:
            upgrade_database(app)
            from .lifecycle import rename_guessable_boards

            rename_guessable_boards()

    socketio.init_app(
        app,
        async_mode=app.config["ASYNC_MODE"],
        allow_upgrades=app.config["WEBSOCKET"],
        message_queue=app.config["MESSAGE_QUEUE"] or None,
    )
    live.init_app(app)
    follow.init_app(app)
    sweeper.init_app(app)
    errors.register(app)
    _server_timing(app)
    app.before_request(access.same_origin_writes)
    app.register_blueprint(classic.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(login.bp)
    return app


def _server_timing(app: "Flask") -> None:
    """A Server-Timing header on every answer: the app's own time for it
    (the browser's network panel and bench/dashboard_scale.py read it)."""
    import time

    from flask import g

    @app.before_request
    def _start() -> None:
        g.jobserver_t0 = time.perf_counter()

    @app.after_request
    def _stamp(response):
        t0 = g.get("jobserver_t0")
        if t0 is not None:
            response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - t0):.1f}"
        return response


def upgrade_database(app: Flask) -> None:
    """Apply the Alembic migrations (idempotent; safe at every start)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["connection_url"] = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        from .extensions import db

        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
