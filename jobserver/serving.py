"""The standalone server (`jobserver serve`)."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def run_standalone(host: str, port: int, async_mode: str = "threading") -> None:
    """Serve with WebSocket and the background sweeper until interrupted.

    ``eventlet`` (the default) runs eventlet's green server: the fastest
    here, but a database call blocks its one OS thread, so long writes are
    chunked and yield.  ``threading`` runs Werkzeug's threaded server: a
    thread per connection, slower, but a long write stalls no one else.
    bench/classic_bench.py and bench/serve_modes.py measure both.
    """
    if async_mode == "eventlet":
        # Must run before Flask, SQLAlchemy or requests are imported.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice: see the README
            import eventlet

        eventlet.monkey_patch()

    from . import create_app
    from .extensions import socketio

    app = create_app({"SWEEP_MODE": "thread", "ASYNC_MODE": async_mode, "WEBSOCKET": True})
    app.extensions["jobserver_sweeper"].start_thread()
    log.info("jobserver on http://%s:%s (%s mode, database %s)", host, port, async_mode,
             app.config["SQLALCHEMY_DATABASE_URI"])
    kwargs = {"allow_unsafe_werkzeug": True} if async_mode == "threading" else {}
    socketio.run(app, host=host, port=port, log_output=False, use_reloader=False, **kwargs)
