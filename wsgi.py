"""WSGI entry point for Apache mod_wsgi (one daemon process with threads).

mod_wsgi cannot carry WebSocket, so live pages use Socket.IO long-polling;
a recycled daemon process takes its threads with it, so lifetimes are
enforced by a rate-limited sweep on incoming requests.

Settings come from JOBSERVER_* environment variables (Apache's SetEnv does not
reach them: export them in /etc/apache2/envvars) or from jobserver.cfg in the
instance folder (JOBSERVER_INSTANCE, by default <virtualenv>/var/jobserver-instance).
"""
from jobserver import create_app

application = create_app({"ASYNC_MODE": "threading", "WEBSOCKET": False, "SWEEP_MODE": "request"})
