#!/usr/bin/env python3
"""The bare-Flask floor for bench/scale_bench.py: a minimal Flask app that
answers the routes the benchmark's workers use, from in-memory Python
structures (a deque of waiting jobs per stage, one lock), served the way
`jobserver serve` serves (the app wrapped in Flask-SocketIO's middleware,
then jobserver.serving.serve_eventlet with the same settings; or
socketio.run in threading mode).  What it costs per job is the cost of
Flask + the WSGI server + JSON, with no database and no validation: the
floor a real server cannot go under.

Correct only for the benchmark's workload, not a jobserver:

- classic: /init/<minutes...>, POST /set (zlib or plain JSON),
  /get/<stage>, /update_job/<jobid>/<stage> (boards named by the jobix header);
- API: POST /api/v1/boards (admin token), POST .../jobs (gzip or plain JSON
  array), POST .../claim, POST .../advance, GET /api/v1/boards/<name>
  (counts per stage), answering the JSON shapes worker_client.Client reads.

    .venv/bin/python bench/bare_flask.py --port 5001 [--async-mode threading]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # jobserver, for serving


def make_app(admin_token: str):
    import collections
    import gzip
    import itertools
    import json
    import secrets
    import threading
    import zlib

    from flask import Flask, Response, jsonify, request

    app = Flask(__name__)
    lock = threading.Lock()
    attempt_ids = itertools.count(1)

    class Board:
        def __init__(self, name: str) -> None:
            self.name = name
            self.waiting: dict[int, collections.deque] = collections.defaultdict(
                collections.deque)  # stage -> keys
            self.jobs: dict[str, list] = {}  # key -> [stage, payload]
            self.attempts: dict[int, str] = {}  # attempt id -> key

        def push(self, key: str, payload, stage: int) -> bool:
            if key in self.jobs:
                return False
            self.jobs[key] = [stage, payload]
            if stage % 2 == 0:
                self.waiting[stage].append(key)
            return True

        def claim(self, stage: int, n: int, to_stage: int | None) -> list[tuple[str, int, int]]:
            queue = self.waiting.get(stage)
            got = []
            while queue and len(got) < n:
                key = queue.popleft()
                job = self.jobs[key]
                job[0] = stage + 1 if to_stage is None else to_stage
                attempt = next(attempt_ids)
                self.attempts[attempt] = key
                got.append((key, job[0], attempt))
            return got

        def move(self, key: str, stage: int) -> None:
            self.jobs[key][0] = stage
            if stage % 2 == 0:
                self.waiting[stage].append(key)

    by_jobix: dict[str, Board] = {}
    by_name: dict[str, Board] = {}
    tokens: dict[str, str] = {}  # token -> board name

    def error(status: int, code: str, message: str):
        resp = jsonify(error=code, message=message)
        resp.status_code = status
        return resp

    def json_answer(value) -> Response:
        return Response(json.dumps(value), mimetype="application/json")

    def classic_board(create: bool = False) -> Board | None:
        jobix = request.headers.get("jobix", "")
        with lock:
            b = by_jobix.get(jobix)
            if b is None and create:
                b = by_jobix[jobix] = Board(f"classic-{jobix}")
        return b

    def api_board(name: str) -> Board | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if tokens.get(token) != name:
            return None
        return by_name.get(name)

    # ---------------------------------------------------------- classic

    @app.route("/")
    def index():
        return Response("Hello from the bare Flask floor.\n", mimetype="text/plain")

    @app.route("/init/<path:minutes>")
    def init(minutes: str):
        classic_board(create=True)
        return json_answer({str(i): float(m) for i, m in enumerate(minutes.strip("/").split("/"))})

    @app.route("/set", methods=["POST"])
    def set_jobs():
        raw = request.get_data()
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        data = json.loads(raw)
        b = classic_board(create=True)
        with lock:
            for jobid, spec in data.items():
                b.push(str(int(jobid)), spec.get("jobcmd"), int(spec["jobstage"]))
        return Response(f"Accepted to {request.headers.get('jobix')}!", mimetype="text/plain")

    @app.route("/get/<s>")
    def get_job(s: str):
        b = classic_board()
        if b is None:
            return json_answer("nada")
        with lock:
            got = b.claim(int(s), 1, None)
            if not got:
                return json_answer("nada")
            key, stage, _ = got[0]
            payload = b.jobs[key][1]
        return json_answer({"jobid": int(key), "jobcmd": payload, "jobstage": stage,
                            "jobix": int(request.headers["jobix"])})

    @app.route("/update_job/<jobid>/<stage>", methods=["GET", "POST"])
    def update_job(jobid: str, stage: str):
        b = classic_board()
        key, new_stage = str(int(jobid)), int(stage)
        if b is None or key not in b.jobs:
            return Response("no such job", status=404, mimetype="text/plain")
        with lock:
            b.move(key, new_stage)
        return Response(f"Success, job {key} was updated to stage {new_stage}!",
                        mimetype="text/plain")

    # -------------------------------------------------------------- API

    @app.post("/api/v1/boards")
    def create_board():
        if request.headers.get("Authorization") != f"Bearer {admin_token}":
            return error(401, "unauthorized", "the admin token is needed")
        name = request.get_json()["name"]
        with lock:
            if name in by_name:
                return error(409, "conflict", f"board {name!r} exists")
            by_name[name] = Board(name)
            token = secrets.token_urlsafe(16)
            tokens[token] = name
        resp = jsonify(board=name, token=token, url=request.url_root.rstrip("/"))
        resp.status_code = 201
        return resp

    @app.get("/api/v1/boards/<name>")
    def status(name: str):
        b = api_board(name)
        if b is None:
            return error(404, "not_found", f"no board {name!r} for this token")
        with lock:
            counts = collections.Counter(stage for stage, _ in b.jobs.values())
        return jsonify(board=name, counts={str(k): v for k, v in sorted(counts.items())})

    @app.post("/api/v1/boards/<name>/jobs")
    def push(name: str):
        b = api_board(name)
        if b is None:
            return error(404, "not_found", f"no board {name!r} for this token")
        raw = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        items = json.loads(raw)
        with lock:
            created = sum(b.push(str(i["key"]), i.get("payload"), i.get("stage", 0))
                          for i in items)
        return jsonify(created=created, existing=len(items) - created, changed=0,
                       changed_keys=[])

    @app.post("/api/v1/boards/<name>/claim")
    def claim(name: str):
        b = api_board(name)
        if b is None:
            return error(404, "not_found", f"no board {name!r} for this token")
        data = request.get_json()
        with lock:
            got = b.claim(data["stage"], data.get("n", 1), data.get("to_stage"))
            jobs = [{"key": key, "payload": b.jobs[key][1], "stage": stage,
                     "attempt_id": attempt, "attempt": 1} for key, stage, attempt in got]
        return jsonify(jobs=jobs)

    @app.post("/api/v1/boards/<name>/advance")
    def advance(name: str):
        b = api_board(name)
        if b is None:
            return error(404, "not_found", f"no board {name!r} for this token")
        advanced = 0
        with lock:
            for item in request.get_json()["attempts"]:
                key = b.attempts.pop(item["attempt_id"], None)
                if key is None:
                    return error(409, "conflict", f"attempt {item['attempt_id']} is not running")
                stage = item.get("to_stage")
                b.move(key, b.jobs[key][0] + 1 if stage is None else stage)
                advanced += 1
        return jsonify(advanced=advanced, cancelled=0)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--async-mode", choices=["eventlet", "threading"], default="eventlet")
    args = ap.parse_args()

    if args.async_mode == "eventlet":
        # as jobserver.serving.run_standalone: before Flask is imported
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import eventlet

        eventlet.monkey_patch()

    import os

    from flask_socketio import SocketIO

    from jobserver.config import DEFAULTS, NoSessions
    from jobserver.serving import raise_file_limit, serve_eventlet

    app = make_app(os.environ.get("JOBSERVER_ADMIN_TOKEN", "bench-admin"))
    app.session_interface = NoSessions()  # as jobserver: no cookie session per request
    socketio = SocketIO(app, async_mode=args.async_mode)  # the same middleware as jobserver
    files = raise_file_limit()
    if args.async_mode == "eventlet":
        timeout = DEFAULTS["CONNECTION_TIMEOUT"]
        most = max(100, min(DEFAULTS["MAX_CONNECTIONS"], files - 100))
        serve_eventlet(app, args.host, args.port, keepalive=timeout, socket_timeout=timeout,
                       max_size=most)
    else:
        socketio.run(app, host=args.host, port=args.port, log_output=False, use_reloader=False,
                     allow_unsafe_werkzeug=True)


if __name__ == "__main__":
    sys.exit(main())
