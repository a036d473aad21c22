"""The standalone server (`jobserver serve`)."""
from __future__ import annotations

import logging
from typing import Any

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
        # psycopg keeps waiting for PostgreSQL in C (poll), which holds the
        # process's one OS thread: measured against its green-select wait
        # (PSYCOPG_WAIT_FUNC=wait_select), the same throughput for a third
        # more CPU, now that claims and reports do not wait for the disk;
        # a second process is the way to more (README, "Scaling out")

    from . import create_app
    from .extensions import socketio

    app = create_app({"SWEEP_MODE": "thread", "ASYNC_MODE": async_mode, "WEBSOCKET": True})
    app.extensions["jobserver_sweeper"].start_thread()
    files = raise_file_limit()
    log.info("jobserver on http://%s:%s (%s mode, database %s, up to %d open files)", host, port,
             async_mode, app.config["SQLALCHEMY_DATABASE_URI"], files)
    if async_mode == "eventlet":
        # idle keep-alive connections and slow clients are closed after
        # CONNECTION_TIMEOUT seconds, and thousands may be open at once
        timeout = app.config["CONNECTION_TIMEOUT"]
        most = max(100, min(app.config["MAX_CONNECTIONS"], files - 100))
        serve_eventlet(app, host, port, keepalive=timeout, socket_timeout=timeout, max_size=most)
    else:
        socketio.run(app, host=host, port=port, log_output=False, use_reloader=False,
                     allow_unsafe_werkzeug=True)


def serve_eventlet(app: Any, host: str, port: int, **kwargs: Any) -> None:
    """What ``socketio.run`` does in eventlet mode (the app is already
    wrapped in the Socket.IO middleware), but listening on our terms:

    - a listen queue of thousands, not eventlet's 50: when a job array
      starts 2,000 workers at once, the connections beyond the queue are
      dropped by the kernel and their first requests wait for TCP to retry
      (a quarter of them were still unanswered after 10 s);
    - no SO_REUSEPORT (eventlet sets it): a second server started on the
      same port must fail, not silently take half of the connections to
      another database.
    """
    import socket

    import eventlet
    import eventlet.wsgi

    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    try:
        listener = eventlet.listen(address, family, backlog=min(kwargs["max_size"], LISTEN_QUEUE),
                                   reuse_port=False)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                         "(is another server running there?)") from None
    # minimum_chunk_size 0: every piece a streamed answer yields (an event
    # stream's message, a followed live log's lines) leaves at once, as
    # under Werkzeug and mod_wsgi; eventlet otherwise gathers 4 KB first (a
    # per-request override in the environ does not reach it: Flask-SocketIO
    # hands the app a copy).  Other answers are one piece anyway.
    eventlet.wsgi.server(listener, app, log_output=False, minimum_chunk_size=0, **kwargs)


LISTEN_QUEUE = 4096  # connections waiting to be accepted (the kernel caps it: somaxconn)


def raise_file_limit() -> int:
    """Lift the soft limit on open files to the hard one: each connection is
    a file, and the usual 1,024 would stop the server at about that many
    (idle) clients.  Returns the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft if soft != resource.RLIM_INFINITY else want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d: %s", soft, exc)
        return soft
    return want
