"""The classic job-list protocol (shared/PROTOCOL.md), answered exactly.

Every route names its board with the ``jobix`` header (browsers may use
``?jobix=``); a jobix only ever sees its own board.
"""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request
from werkzeug.exceptions import BadRequest, Forbidden, LengthRequired

from . import access, insights, lifecycle, queries
from .bodies import parse_json
from .extensions import socketio
from .lifecycle import BoardRef, NewJob
from .limits import (INT64_MAX, MAX_PAGE, MAX_STAGE, max_payload, parse_int,
                     payload_too_large, storable)

bp = Blueprint("classic", __name__)

NADA = "nada"


def wants_html() -> bool:
    """A browser asks for HTML explicitly; scripts (urllib, requests) don't."""
    return "text/html" in request.headers.get("Accept", "")


# The pages a browser may open with ?jobix=N.  Every other route changes a
# job list and takes the jobix from the header only: a link, an <img> or a
# form on another site cannot send a custom header (not without a CORS
# preflight, which this server never grants).
READ_ONLY = {"classic.init_show", "classic.job_list_page", "classic.job_list_rows",
             "classic.lifetime_page", "classic.lifetime_of"}


def read_jobix() -> int:
    raw = request.headers.get("jobix")
    if raw is None and request.endpoint in READ_ONLY:
        raw = request.args.get("jobix")
    if raw is None and request.args.get("jobix") is not None:
        raise Forbidden("this route changes a job list: send the jobix as the 'jobix' header "
                        "(?jobix= in the address is for the read-only pages)")
    if raw is None or raw.strip() == "":
        raise Forbidden("missing 'jobix' header: it names your job list")
    try:
        return parse_int(raw, "'jobix'", -INT64_MAX - 1)
    except BadRequest as exc:
        raise Forbidden(exc.description) from None


def board(create: bool = False) -> BoardRef | None:
    jobix = read_jobix()
    return lifecycle.ensure_board(jobix) if create else lifecycle.find_board(jobix)


def need_board() -> BoardRef:
    b = board()
    if b is None:
        abort(404, "no job list for this jobix yet: create it with /init or /set")
    return b


def stage_arg(text: str, what: str = "stage") -> int:
    return parse_int(text, what, 0, MAX_STAGE if "stage" in what else INT64_MAX)


def minutes_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"a lifetime is a number of minutes, got {text[:40]!r}") from None
    if not (0 <= value < float("inf")):
        raise BadRequest(f"a lifetime is minutes >= 0, got {text[:40]!r}")
    return value


def json_answer(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


def lifetimes_answer(lts: dict[int, float]) -> Response:
    return json_answer({str(s): _num(m) for s, m in lts.items()})


def _num(m: float) -> float | int:
    return int(m) if float(m).is_integer() else m


@bp.route("/")
def index():
    if wants_html():
        viewer = access.viewer()
        if viewer is None:
            return access.challenge()
        boards = insights.boards_overview(viewer.boards)
        return render_template("home.html", boards=boards, viewer=viewer)
    return Response("Hello from jobserver: the job list is ready.\n", mimetype="text/plain")


@bp.route("/init")
def init_show():
    b = need_board()
    return lifetimes_answer(lifecycle.lifetimes(b.id))


@bp.route("/init/<path:minutes>")
def init(minutes: str):
    values = [minutes_arg(m) for m in minutes.strip("/").split("/")]
    read_jobix()  # 403 before anything is created
    b = board(create=True)
    assert b is not None
    return lifetimes_answer(lifecycle.set_lifetimes_if_unset(b.id, values))


def body() -> bytes:
    """The request body.  A chunked one (no Content-Length) reaches the app
    only if the WSGI server says it ends the stream (Werkzeug's server does,
    eventlet's does not): otherwise Werkzeug hands over an empty body, and a
    report would be applied without its file name.  Refused instead."""
    if (request.content_length is None and "wsgi.input_terminated" not in request.environ
            and "chunked" in request.headers.get("Transfer-Encoding", "").lower()):
        raise LengthRequired("this server needs a Content-Length with a body: "
                             "send it whole, not chunked")
    return request.get_data()


def _jobs_from_body(data: Any) -> list[NewJob]:
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object {"<jobid>": {"jobstage": int, "jobcmd": ...}}')
    jobs = []
    limit = max_payload()
    for i, (jobid, spec) in enumerate(data.items()):
        if i % 10_000 == 9_999:
            socketio.sleep(0)  # a long list must not hold an eventlet hub
        key = str(parse_int(jobid, "job id", -INT64_MAX - 1))
        if not isinstance(spec, dict) or "jobstage" not in spec:
            raise BadRequest(f'job {key}: expected {{"jobstage": int, "jobcmd": ...}}')
        stage = spec["jobstage"]
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= MAX_STAGE:
            raise BadRequest(f"job {key}: jobstage must be an integer from 0 to {MAX_STAGE}")
        payload = json.dumps(spec.get("jobcmd"))
        if len(payload) > limit:
            raise payload_too_large(key, len(payload), limit)
        jobs.append(NewJob(key, payload, stage))
    return jobs


@bp.route("/set", methods=["POST"])
def set_jobs():
    read_jobix()
    jobs = _jobs_from_body(parse_json(body()))
    b = board(create=True)
    assert b is not None
    lifecycle.push(b.id, jobs)
    return Response(f"Accepted to {b.jobix}!", mimetype="text/plain")


def _claim_answer(s: int, nxt: int | None) -> Response:
    b = board()
    if b is None:
        return json_answer(NADA)
    got = lifecycle.claim(b.id, s, 1, to_stage=nxt, worker=request.remote_addr)
    if not got:
        return json_answer(NADA)
    job = got[0]
    jobid: Any = int(job.key) if job.key.lstrip("-").isdigit() else job.key
    return json_answer({"jobid": jobid, "jobcmd": json.loads(job.payload),
                        "jobstage": job.stage, "jobix": b.jobix})


def _page_without_jobix(target: str):
    """A page asked for without a jobix: a form for browsers, 403 for scripts."""
    if request.headers.get("jobix") is not None or request.args.get("jobix") is not None:
        return None
    if wants_html():
        return render_template("ask_jobix.html", target=target), 403
    raise Forbidden("missing 'jobix' header: it names your job list")


@bp.route("/get")
def job_list_page():
    ask = _page_without_jobix("/get")
    if ask is not None:
        return ask
    b = need_board()
    page = request.args.get("page", "1")
    summary = queries.board_summary(b.id)
    table = queries.jobs_page(b.id, parse_int(page, "page", 0, MAX_PAGE) or 1,
                              current_app.config["PAGE_SIZE"])
    if not wants_html():
        return json_answer({"summary": summary, "table": table})
    return render_template("job_list.html", board=b, summary=summary, table=table)


@bp.route("/get/rows")
def job_list_rows():
    """One page of the job table as JSON (the live page refreshes with it)."""
    b = need_board()
    page = parse_int(request.args.get("page", "1"), "page", 0, MAX_PAGE) or 1
    stage = request.args.get("stage")
    return json_answer(queries.jobs_page(
        b.id, page, current_app.config["PAGE_SIZE"],
        stage=None if stage in (None, "") else stage_arg(stage)))


@bp.route("/get/<s>")
def get_job(s: str):
    return _claim_answer(stage_arg(s), None)


@bp.route("/get/<s>/<nxt>")
def get_job_to(s: str, nxt: str):
    return _claim_answer(stage_arg(s), stage_arg(nxt, "next stage"))


@bp.route("/update_job/<jobid>/<stage>", methods=["GET", "POST"])
def update_job(jobid: str, stage: str):
    read_jobix()
    key = str(_int_jobid(jobid))
    new_stage = stage_arg(stage)
    filename = payload = None
    raw = body()
    if raw:
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise BadRequest('body must be a JSON object {"filename": str, "jobcmd": ...}')
        if "filename" in data:
            filename = _filename(data["filename"])
        if "jobcmd" in data:
            payload = json.dumps(data["jobcmd"])
            if len(payload) > max_payload():
                raise payload_too_large(key, len(payload), max_payload())
    b = need_board()
    lifecycle.update_job(b.id, key, new_stage, filename=filename, payload=payload)
    return Response(f"Success, job {key} was updated to stage {new_stage}!", mimetype="text/plain")


MAX_FILENAME = 4096  # characters: a path (Linux's PATH_MAX), not a place for data


def _filename(value: Any) -> str | None:
    """The file name a classic report carries: a path, which no database
    column refuses (PostgreSQL's text cannot hold NUL)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("filename must be a string")
    if len(value) > MAX_FILENAME:
        raise BadRequest(f"filename is {len(value):,} characters long, more than "
                         f"{MAX_FILENAME:,}: send a path")
    if "\x00" in value:
        raise BadRequest("filename holds a NUL character")
    if not storable(value):
        raise BadRequest("filename is not valid Unicode (a lone surrogate such as \\ud800)")
    return value


def _int_jobid(text: str) -> int:
    return parse_int(text, "job id", -INT64_MAX - 1)


def _check_answer(b: BoardRef) -> dict[str, int]:
    swept = lifecycle.sweep(board_id=b.id)
    fine = swept.flagged == 0 and queries.count_flagged_fast(b.id) == 0
    return {"Are all simulations within time frame?": int(fine)}


@bp.route("/check_stages")
def check_stages():
    b = need_board()
    return json_answer(_check_answer(b))


@bp.route("/check_stages/<old>/<new>")
def check_stages_requeue(old: str, new: str):
    b = need_board()
    o, n = stage_arg(old, "old stage"), stage_arg(new, "new stage")
    answer: dict[str, int] = _check_answer(b)
    answer["n_bad_jobs were degraded:"] = lifecycle.requeue_flagged(b.id, o, n)
    return json_answer(answer)


@bp.route("/lifetime")
def lifetime_page():
    ask = _page_without_jobix("/lifetime")
    if ask is not None:
        return ask
    b = need_board()
    lts = lifecycle.lifetimes(b.id)
    if not wants_html():
        return lifetimes_answer(lts)
    return render_template("lifetime.html", board=b, lifetimes=lts)


@bp.route("/lifetime/<s>")
def lifetime_of(s: str):
    b = need_board()
    stage = stage_arg(s)
    lts = lifecycle.lifetimes(b.id)
    if stage not in lts:
        abort(404, f"stage {stage} has no lifetime set on this board")
    return json_answer(_num(lts[stage]))


@bp.route("/lifetime/<s>/<m>")
def lifetime_set(s: str, m: str):
    stage, minutes = stage_arg(s), minutes_arg(m)
    b = need_board()
    return lifetimes_answer(lifecycle.set_lifetime(b.id, stage, minutes))
