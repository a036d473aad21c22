"""The OpenAPI document is the contract: every route of /api/v1 is in it,
it validates, and the rules the push loop checks by hand are the document's."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from jobserver.api import jobs as api_jobs
from jobserver.api.openapi import BODIES, NEW_JOB, PUSH_RULES, spec
from tests.conftest import ADMIN


def test_every_api_route_is_in_the_document_and_back(app):
    doc = spec()
    validate(doc)
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented


def test_every_request_body_is_described(app):
    doc = spec()
    for (path, method), schema in BODIES.items():
        assert doc["paths"][path][method]["requestBody"]["content"]["application/json"][
            "schema"] is schema


def test_the_push_loop_checks_the_new_job_schema(client):
    props = NEW_JOB["properties"]
    assert PUSH_RULES == {"max_key": props["key"]["oneOf"][0]["maxLength"],
                          "max_stage": props["stage"]["maximum"],
                          "max_after": props["after"]["maxItems"],
                          "priority": (props["priority"]["minimum"], props["priority"]["maximum"]),
                          "max_attempts": (props["max_attempts"]["minimum"],
                                           props["max_attempts"]["maximum"])}
    assert (api_jobs.MAX_KEY, api_jobs.MAX_PUSH_STAGE) == (PUSH_RULES["max_key"],
                                                           PUSH_RULES["max_stage"])
    token = client.post("/api/v1/boards", headers=ADMIN, json={"name": "c"}).json["token"]
    auth = {"Authorization": f"Bearer {token}"}

    def push(job):
        return client.post("/api/v1/boards/c/jobs", json=[job], headers=auth).status_code

    assert push({"key": "k" * PUSH_RULES["max_key"]}) == 200
    assert push({"key": "k" * (PUSH_RULES["max_key"] + 1)}) == 400
    assert push({"key": ""}) == 400
    assert push({"key": 2**63}) == 400
    assert push({"key": "s", "stage": PUSH_RULES["max_stage"] + 1}) == 400
    assert push({"key": "t", "stage": -1}) == 400
    lo, hi = PUSH_RULES["priority"]
    assert push({"key": "p1", "priority": lo}) == push({"key": "p2", "priority": hi}) == 200
    assert push({"key": "p3", "priority": hi + 1}) == push({"key": "p4", "priority": 1.5}) == 400
    assert push({"key": "p5", "priority": True}) == 400
    lo, hi = PUSH_RULES["max_attempts"]
    assert push({"key": "m1", "max_attempts": hi}) == 200
    assert push({"key": "m2", "max_attempts": lo - 1}) == 400
    assert push({"key": "a1", "after": ["p1"] * PUSH_RULES["max_after"]}) == 200
    assert push({"key": "a2", "after": ["p1"] * (PUSH_RULES["max_after"] + 1)}) == 400
    assert push({"key": "a3", "after": "p1"}) == push({"key": "a4", "after": [""]}) == 400
    assert push({"key": "a5", "after": [2**63]}) == 400


@pytest.mark.parametrize("body, field", [
    ({"stage": -1, "worker": "w"}, "stage"), ({"stage": 0, "worker": ""}, "worker"),
    ({"stage": 0, "worker": "w", "n": 1001}, "n"), ({"stage": 0}, "worker"),
    ({"stage": 0, "worker": "w" * 201}, "worker")])
def test_refusals_name_the_field(client, body, field):
    token = client.post("/api/v1/boards", headers=ADMIN, json={"name": "c"}).json["token"]
    r = client.post("/api/v1/boards/c/claim", json=body,
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and field in r.json["message"], r.json


def test_the_fast_advance_accepts_only_what_the_schema_accepts():
    from jobserver.api.jobs import _plain_advance
    from jobserver.api.validate import _validator

    schema = _validator("/boards/{name}/advance", "post")
    samples = [
        {"attempts": [{"attempt_id": 1}]}, {"attempts": []},
        {"attempts": [{"attempt_id": 2**31 - 1, "log": "x"}, {"attempt_id": 0, "log": None}]},
        {"attempts": [{"attempt_id": 2**31}]}, {"attempts": [{"attempt_id": -1}]},
        {"attempts": [{"attempt_id": True}]}, {"attempts": [{"attempt_id": 1.0}]},
        {"attempts": [{"attempt_id": 1, "log": 5}]}, {"attempts": [{"log": "x"}]},
        {"attempts": [{"attempt_id": 1}], "extra": 1}, {"attempts": [1]},
        {"attempts": [{"attempt_id": 1}] * 10_001}, {"attempts": "no"}]
    for body in samples:
        if _plain_advance(body):
            assert schema.is_valid(body), body
    assert _plain_advance({"attempts": [{"attempt_id": 7, "log": "out"}]})
