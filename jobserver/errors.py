"""Errors are answers: every failure as JSON {"error", "message"}."""
from __future__ import annotations

import json

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .lifecycle import Conflict, LifecycleError, NotFound, UnknownStage
from .lifecycle.events import Gone


def error_response(status: int, message: str):
    resp = jsonify(error=HTTP_STATUS_CODES.get(status, "error"), message=message)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="jobserver"'
    resp.status_code = status
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        resp = error_response(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():  # Allow on a 405, for one
            if name.lower() != "content-type":
                resp.headers[name] = value
        return resp

    @app.errorhandler(NotFound)
    @app.errorhandler(UnknownStage)
    def _missing(exc: LifecycleError):
        return error_response(404, str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        resp = error_response(409, str(exc))
        if exc.details is not None:
            body = resp.get_json()
            body["details"] = exc.details
            resp.set_data(json.dumps(body))
        return resp

    @app.errorhandler(Gone)
    def _gone(exc: Gone):
        return error_response(410, str(exc))

    @app.errorhandler(LifecycleError)
    def _bad(exc: LifecycleError):
        return error_response(400, str(exc))
