"""Roles: every board route declares its action, and each role's token
(and each member's key) is allowed exactly its actions, refused the rest
with 403.  In-process, on SQLite and PostgreSQL."""
from __future__ import annotations

import re
import time

import pytest

from jobserver import lifecycle
from tests.conftest import ADMIN

# The brief's table, written out here on its own (not imported): a change
# of the server's table must be a deliberate change of this one.
READ = "read"
ALLOWED = {
    "owner": None,  # everything
    "submitter": {READ, "push", "cancel", "retry", "priority"},
    "worker": {READ, "claim", "heartbeat", "advance", "fail", "release", "report"},
    "viewer": {READ},
}
# What each board route does.  A new GET route is a read; a new write
# route must be added here (the test fails until it is).
ROUTES = {
    ("PATCH", "/api/v1/boards/<name>"): "settings",
    ("DELETE", "/api/v1/boards/<name>"): "delete",
    ("PUT", "/api/v1/boards/<name>/stages/<int:stage>"): "settings",
    ("POST", "/api/v1/boards/<name>/jobs"): "push",
    ("POST", "/api/v1/boards/<name>/cancel"): "cancel",
    ("POST", "/api/v1/boards/<name>/retry"): "retry",
    ("POST", "/api/v1/boards/<name>/priority"): "priority",
    ("POST", "/api/v1/boards/<name>/claim"): "claim",
    ("POST", "/api/v1/boards/<name>/heartbeat"): "heartbeat",
    ("POST", "/api/v1/boards/<name>/advance"): "advance",
    ("POST", "/api/v1/boards/<name>/fail"): "fail",
    ("POST", "/api/v1/boards/<name>/release"): "release",
    ("PUT", "/api/v1/boards/<name>/allocations/<allocation>"): "report",
    ("GET", "/api/v1/boards/<name>/members"): "members",
    ("POST", "/api/v1/boards/<name>/members"): "members",
    ("DELETE", "/api/v1/boards/<name>/members/<user>"): "members",
    ("GET", "/api/v1/boards/<name>/tokens"): "tokens",
    ("POST", "/api/v1/boards/<name>/tokens"): "tokens",
    ("DELETE", "/api/v1/boards/<name>/tokens/<int:token_id>"): "tokens",
    ("POST", "/api/v1/boards/<name>/share"): "tokens",
}


def board_routes(app) -> list[tuple[str, str, str]]:
    """(method, rule, endpoint) of every route of a board."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/boards/<name>"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out.append((method, rule.rule, rule.endpoint))
    return out


def action_of(method: str, rule: str) -> str:
    if (method, rule) in ROUTES:
        return ROUTES[(method, rule)]
    assert method == "GET", f"{method} {rule}: a new write route: add it to ROUTES"
    return READ


def test_every_board_route_declares_its_action(app):
    routes = board_routes(app)
    assert len(routes) >= 27
    for method, rule, endpoint in routes:
        view = app.view_functions[endpoint]
        declared = getattr(view, "required_action", None)
        assert declared is not None, f"{method} {rule} declares no role (roles.requires)"
        assert declared == action_of(method, rule), f"{method} {rule}"


def path_of(rule: str, board: str, token_id: int) -> str:
    values = {"name": board, "int:stage": "1", "path:key": "k0", "allocation": "a1",
              "user": "nobody", "int:token_id": str(token_id)}
    return re.sub(r"<([^>]+)>", lambda m: values[m.group(1)], rule)


def new_board(client, name: str) -> dict[str, str]:
    """A board with a token per role and a member with a key per role."""
    r = client.post("/api/v1/boards", headers=ADMIN, json={"name": name})
    assert r.status_code == 201
    owner = {"Authorization": f"Bearer {r.json['token']}"}
    creds = {}
    for role in ALLOWED:
        t = client.post(f"/api/v1/boards/{name}/tokens", headers=owner,
                        json={"role": role, "name": role})
        assert t.status_code == 201, t.json
        creds[("token", role)] = t.json["token"]
        user = f"{name}-{role}"
        u = client.post("/api/v1/users", headers=ADMIN, json={"name": user})
        assert u.status_code == 201, u.json
        m = client.post(f"/api/v1/boards/{name}/members", headers=owner,
                        json={"user": user, "role": role})
        assert m.status_code == 201, m.json
        creds[("key", role)] = u.json["key"]
    return creds


@pytest.mark.parametrize("kind", ["token", "key"])
def test_each_role_is_allowed_exactly_its_actions(app, client, kind):
    creds = new_board(client, "sims")
    owner = {"Authorization": f"Bearer {creds[('token', 'owner')]}"}
    client.post("/api/v1/boards/sims/jobs", headers=owner, json=[{"key": "k0"}])
    checked = 0
    for method, rule, _ in board_routes(app):
        action = action_of(method, rule)
        for role, allowed in ALLOWED.items():
            board, token = "sims", creds[(kind, role)]
            if action == "delete":  # a board of its own: an allowed delete deletes it
                board = f"del-{role}-{kind}"
                token = new_board(client, board)[(kind, role)]
            victim = client.post(f"/api/v1/boards/{board}/tokens", headers=owner if
                                 board == "sims" else ADMIN, json={"role": "viewer"})
            path = path_of(rule, board, victim.json["id"])
            r = client.open(path, method=method, json={},
                            headers={"Authorization": f"Bearer {token}"})
            if allowed is None or action in allowed:
                assert r.status_code not in (401, 403), (role, method, path, r.json)
            else:
                assert r.status_code == 403, (role, method, path, r.status_code)
                assert r.json["error"] == "Forbidden"
                assert f"{role} " in r.json["message"] and "may not" in r.json["message"] \
                    and "needs the role" in r.json["message"], r.json["message"]
            checked += 1
    assert checked >= 27 * 4


def test_a_route_without_a_declared_role_is_refused(app, client):
    """Fail closed: a board route that forgets roles.requires answers 403."""
    from jobserver.api.auth import board_for_request

    @app.get("/api/v1/boards/<name>/undeclared-test")
    def undeclared(name):
        return {"board": board_for_request(name).name}

    creds = new_board(client, "sims")
    r = client.get("/api/v1/boards/sims/undeclared-test",
                   headers={"Authorization": f"Bearer {creds[('token', 'owner')]}"})
    assert r.status_code == 403 and "declares no role" in r.json["message"]


def test_expired_and_revoked_tokens_are_401(client):
    creds = new_board(client, "sims")
    owner = {"Authorization": f"Bearer {creds[('token', 'owner')]}"}
    t = client.post("/api/v1/boards/sims/tokens", headers=owner,
                    json={"role": "worker", "expires_in": 1}).json
    worker = {"Authorization": f"Bearer {t['token']}"}
    assert client.get("/api/v1/boards/sims", headers=worker).status_code == 200
    time.sleep(1.1)  # (cached for a second: expiry is checked at each use anyway)
    r = client.get("/api/v1/boards/sims", headers=worker)
    assert r.status_code == 401 and "expired" in r.json["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    viewer = {"Authorization": f"Bearer {creds[('token', 'viewer')]}"}
    assert client.get("/api/v1/boards/sims", headers=viewer).status_code == 200
    tid = next(x["id"] for x in client.get("/api/v1/boards/sims/tokens", headers=owner)
               .json["tokens"] if x["name"] == "viewer")
    assert client.delete(f"/api/v1/boards/sims/tokens/{tid}", headers=owner).json == {
        "id": tid, "revoked": True}
    r = client.get("/api/v1/boards/sims", headers=viewer)
    assert r.status_code == 401 and "revoked" in r.json["message"]
    # an expiring owner token makes tokens that expire with it, at the latest
    brief = client.post("/api/v1/boards/sims/tokens", headers=owner,
                        json={"role": "owner", "expires_in": 3600}).json
    made = client.post("/api/v1/boards/sims/tokens", json={"role": "owner"},
                       headers={"Authorization": f"Bearer {brief['token']}"}).json
    assert made["expires_at"] == brief["expires_at"]
    share = client.post("/api/v1/boards/sims/share", json={"expires_in": 7200},
                        headers={"Authorization": f"Bearer {brief['token']}"}).json
    assert share["expires_at"] == brief["expires_at"]
    listed = client.get("/api/v1/boards/sims/tokens", headers=owner).json["tokens"]
    assert {x["role"] for x in listed} == {"owner", "submitter", "worker", "viewer"}
    assert all("token" not in x and "digest" not in x for x in listed)


@pytest.mark.parametrize("body", [{"role": "wroker"}, {}, {"role": "viewer", "expires_in": 0},
                                  {"role": "viewer", "expires_at": 5e9},
                                  {"role": "viewer", "expires_in": 5, "expires_at": 2e9}])
def test_bad_token_requests_are_400(client, body):
    creds = new_board(client, "sims")
    r = client.post("/api/v1/boards/sims/tokens", json=body,
                    headers={"Authorization": f"Bearer {creds[('token', 'owner')]}"})
    assert r.status_code == 400 and r.json["error"] == "Bad Request", r.json


def test_user_keys_act_by_membership(client):
    u = client.post("/api/v1/users", headers=ADMIN, json={"name": "carol"}).json
    carol = {"Authorization": f"Bearer {u['key']}"}
    made = client.post("/api/v1/boards", headers=carol, json={"name": "hers"})
    assert made.status_code == 201  # a user creates a board: its owner
    assert client.get("/api/v1/boards/hers/members", headers=carol).json == {
        "members": [{"user": "carol", "role": "owner", "created_at": pytest.approx(
            time.time(), abs=60)}]}
    client.post("/api/v1/boards", headers=ADMIN, json={"name": "not-hers"})
    r = client.get("/api/v1/boards/not-hers", headers=carol)
    assert r.status_code == 403 and "not a member" in r.json["message"]
    assert [b["name"] for b in client.get("/api/v1/boards", headers=carol).json["boards"]] \
        == ["hers"]
    assert client.get("/api/v1/boards/nope", headers=carol).status_code == 404
    # a member's role changes, then the member is removed
    d = client.post("/api/v1/users", headers=carol, json={"name": "dave"})
    assert d.status_code == 403  # not an admin
    dave_key = client.post("/api/v1/users", headers=ADMIN, json={"name": "dave"}).json["key"]
    dave = {"Authorization": f"Bearer {dave_key}"}
    assert client.post("/api/v1/boards/hers/members", headers=carol,
                       json={"user": "dave", "role": "viewer"}).status_code == 201
    assert client.post("/api/v1/boards/hers/jobs", headers=dave, json=[]).status_code == 403
    assert client.post("/api/v1/boards/hers/members", headers=carol,
                       json={"user": "dave", "role": "submitter"}).status_code == 200
    time.sleep(1.05)  # the per-process cache of roles lives a second
    assert client.post("/api/v1/boards/hers/jobs", headers=dave,
                       json=[{"key": "a"}]).status_code == 200
    assert client.delete("/api/v1/boards/hers/members/dave", headers=carol).status_code == 200
    r = client.get("/api/v1/boards/hers", headers=dave)
    assert r.status_code == 403  # (this process forgot the role at once)
    # an admin user sees and may do everything
    admin_key = client.post("/api/v1/users", headers=ADMIN,
                            json={"name": "root", "admin": True}).json["key"]
    root = {"Authorization": f"Bearer {admin_key}"}
    assert client.get("/api/v1/boards/not-hers", headers=root).status_code == 200
    assert client.post("/api/v1/users", headers=root, json={"name": "eve"}).status_code == 201
    assert {b["name"] for b in client.get("/api/v1/boards", headers=root).json["boards"]} \
        == {"hers", "not-hers"}
    # a revoked key is refused
    user = lifecycle.user_by_name("carol")
    lifecycle.revoke_key(user.id, lifecycle.list_keys(user.id)[0]["id"])
    r = client.get("/api/v1/boards/hers", headers=carol)
    assert r.status_code == 401 and "revoked" in r.json["message"]


def test_admin_creates_users_and_passwords_are_hashed(app, client):
    from jobserver.extensions import db

    r = client.post("/api/v1/users", json={"name": "x"})
    assert r.status_code == 401
    r = client.post("/api/v1/users", headers=ADMIN,
                    json={"name": "frank", "password": "correct horse", "admin": False})
    assert r.status_code == 201 and r.json["key"].startswith("jsu_")
    assert client.post("/api/v1/users", headers=ADMIN, json={"name": "frank"}).status_code == 409
    assert client.post("/api/v1/users", headers=ADMIN,
                       json={"name": "bad name"}).status_code == 400
    with db.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT password_hash FROM users WHERE name = 'frank'").scalar()
        keys = [row[0] for row in conn.exec_driver_sql("SELECT digest FROM api_keys")]
    assert stored.startswith("scrypt:") and "correct horse" not in stored
    assert r.json["key"] not in keys and len(keys[0]) == 64
    assert lifecycle.check_login("frank", "correct horse") is not None
    assert lifecycle.check_login("frank", "wrong") is None
    listed = client.get("/api/v1/users", headers=ADMIN).json["users"]
    assert listed[0]["name"] == "frank" and listed[0]["password"] is True
    assert "password_hash" not in listed[0]
