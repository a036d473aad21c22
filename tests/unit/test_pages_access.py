"""Who sees which board's pages: the open server, the viewer password, a
logged-in member, an admin, a share link (in-process, SQLite and
PostgreSQL); and a database of the previous release keeps its tokens."""
from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest

from jobserver import create_app, lifecycle
from jobserver.dialect import close_writer
from jobserver.extensions import db
from tests.conftest import ADMIN, sqlite_at_revision


def html(r) -> str:
    return r.get_data(as_text=True)


def listed(client, **kwargs) -> list[str]:
    """The board names the home page lists."""
    r = client.get("/", headers={"Accept": "text/html", **kwargs.pop("headers", {})}, **kwargs)
    assert r.status_code == 200, r.status_code
    return re.findall(r'<tr data-board="([^"]+)"', html(r))


@pytest.fixture
def boards(app, client):
    """Boards alpha, beta, gamma; users bob (member of beta, with a
    password) and root (an admin, with a password)."""
    tokens = {}
    for name in ("alpha", "beta", "gamma"):
        tokens[name] = client.post("/api/v1/boards", headers=ADMIN,
                                   json={"name": name}).json["token"]
    for name, admin in (("bob", False), ("root", True)):
        assert client.post("/api/v1/users", headers=ADMIN, json={
            "name": name, "admin": admin, "password": f"{name}-pw"}).status_code == 201
    client.post("/api/v1/boards/beta/members", json={"user": "bob", "role": "viewer"},
                headers={"Authorization": f"Bearer {tokens['beta']}"})
    return tokens


def share(client, token: str, board: str) -> dict:
    r = client.post(f"/api/v1/boards/{board}/share", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.json
    return r.json


def login(client, name: str, password: str, next_: str = "/"):
    return client.post("/login", data={"name": name, "password": password, "next": next_})


def test_home_page_lists_what_each_viewer_may_see(app, boards):
    every = ["alpha", "beta", "gamma"]
    assert listed(app.test_client()) == every  # an open server: all, as before
    app.config["VIEW_PASSWORD"] = "pw"
    nobody = app.test_client().get("/", headers={"Accept": "text/html"})
    assert nobody.status_code == 401 and 'name="password"' in html(nobody)  # the login form
    assert nobody.headers["WWW-Authenticate"].startswith("Basic")
    basic = "Basic " + base64.b64encode(b"any:pw").decode()
    assert listed(app.test_client(), headers={"Authorization": basic}) == every
    member = app.test_client()
    assert login(member, "bob", "bob-pw").status_code == 303
    assert listed(member) == ["beta"]
    assert "bob" in html(member.get("/", headers={"Accept": "text/html"}))  # the header says who
    admin = app.test_client()
    login(admin, "root", "root-pw")
    assert listed(admin) == every
    shared = app.test_client()
    link = share(app.test_client(), boards["gamma"], "gamma")
    assert shared.get(link["url"].removeprefix("http://localhost")).status_code == 303
    assert listed(shared) == ["gamma"]
    # a member who also opened a share link: both
    member.get(f"/s/{link['token']}")
    assert listed(member) == ["beta", "gamma"]
    # a user who is a member of nothing: an empty list that says why
    lifecycle.create_user("newbie", password="newbie-pw")
    lonely = app.test_client()
    login(lonely, "newbie", "newbie-pw")
    assert listed(lonely) == []
    assert "No board is shared with you" in html(lonely.get("/", headers={"Accept": "text/html"}))
    # logging out ends the member's part
    assert member.post("/logout").status_code == 303
    assert listed(member) == ["gamma"]


def test_share_link_opens_one_boards_pages_until_revoked(app, boards):
    app.config["VIEW_PASSWORD"] = "pw"
    owner = {"Authorization": f"Bearer {boards['gamma']}"}
    link = share(app.test_client(), boards["gamma"], "gamma")
    assert link["url"] == f"http://localhost/s/{link['token']}"
    c = app.test_client()
    r = c.get(f"/s/{link['token']}")
    assert r.status_code == 303 and r.headers["Location"] == "/boards/gamma"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    for page in ("/boards/gamma", "/boards/gamma/summary.json", "/boards/gamma/jobs.json",
                 "/boards/gamma/lifetimes"):
        assert c.get(page).status_code == 200, page
    for page in ("/boards/alpha", "/boards/alpha/jobs.json", "/boards/nosuch"):
        r = c.get(page)
        assert r.status_code == 403 and "not shared with you" in r.json["message"], page
    # the cookie is no bearer token: the API stays shut, writes and reads
    assert c.post("/api/v1/boards/gamma/jobs", json=[{"key": "x"}]).status_code == 401
    assert c.get("/api/v1/boards/gamma").status_code == 401
    # the link's token is a viewer's: it reads over the API, never writes
    viewer = {"Authorization": f"Bearer {link['token']}"}
    assert c.get("/api/v1/boards/gamma", headers=viewer).status_code == 200
    assert c.post("/api/v1/boards/gamma/jobs", headers=viewer, json=[]).status_code == 403
    # revoked: refused at once (this process), the home page shut
    assert c.delete(f"/api/v1/boards/gamma/tokens/{link['id']}", headers=owner).status_code == 200
    assert c.get("/boards/gamma").status_code == 401
    assert c.get("/", headers={"Accept": "text/html"}).status_code == 401
    assert c.get(f"/s/{link['token']}").status_code == 404
    # an owner's token is no share link (the URL would hand out everything)
    assert c.get(f"/s/{boards['gamma']}").status_code == 404
    assert c.get("/s/garbage").status_code == 404


def test_share_link_expires(app, boards):
    app.config["VIEW_PASSWORD"] = "pw"
    r = app.test_client().post("/api/v1/boards/gamma/share", json={"expires_in": 1},
                               headers={"Authorization": f"Bearer {boards['gamma']}"})
    c = app.test_client()
    c.get(f"/s/{r.json['token']}")
    assert c.get("/boards/gamma").status_code == 200
    time.sleep(1.1)
    assert c.get("/boards/gamma").status_code == 401


def test_login_checks_the_password_and_a_new_password_ends_sessions(app, boards):
    app.config["VIEW_PASSWORD"] = "pw"
    c = app.test_client()
    r = login(c, "bob", "wrong")
    assert r.status_code == 401 and "Wrong user name or password" in html(r)
    assert login(c, "nobody", "x").status_code == 401
    assert login(c, "bob", "x" * 5000).status_code == 400  # bounded
    for evil in ("//evil.example/", "/\t/evil.example", "/\n/x", "https://evil.example/",
                 "/\\evil.example"):
        r = login(c, "bob", "bob-pw", next_=evil)
        assert r.status_code == 303 and r.headers["Location"] == "/", evil  # no open redirect
    r = login(c, "bob", "bob-pw", next_="/boards/beta?page=2")
    assert r.headers["Location"] == "/boards/beta?page=2"
    assert c.get("/boards/beta").status_code == 200
    assert c.get("/boards/alpha").status_code == 403
    lifecycle.set_password(lifecycle.user_by_name("bob").id, "new-pw")
    assert c.get("/boards/beta").status_code == 401
    assert c.get("/login").status_code == 200


def test_api_requests_carry_no_session(app, boards):
    """No cookie, no session: the API's answers set none (and stay cheap)."""
    r = app.test_client().get("/api/v1/boards/alpha",
                              headers={"Authorization": f"Bearer {boards['alpha']}"})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    assert app.config["SECRET_KEY"] != "dev-not-secret"


def test_tokens_of_the_previous_release_are_owner_tokens(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite_at_revision(path, "0007")
    token = "jsb_an-old-token"
    old.execute("INSERT INTO boards (id, name, created_at, auto_requeue, max_attempts) "
                "VALUES (1, 'old', 0, 1, 3)")
    old.execute("INSERT INTO jobs (id, board_id, key, payload, stage, entered_at, flagged, "
                "attempts, state) VALUES (1, 1, 'a', 'null', 0, 0, 0, 0, 'active')")
    old.execute("INSERT INTO tokens (board_id, name, digest, created_at) VALUES (1, 't', ?, 0)",
                (hashlib.sha256(token.encode()).hexdigest(),))
    old.commit()
    old.close()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SWEEP_MODE": "off"})  # migrates
    with app.app_context():
        c = app.test_client()
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/v1/boards/old/jobs/a", headers=auth).status_code == 200  # kept
        assert c.patch("/api/v1/boards/old", headers=auth,
                       json={"max_attempts": 5}).status_code == 200  # an owner's action
        assert c.get("/api/v1/boards/old/tokens", headers=auth).json["tokens"][0]["role"] \
            == "owner"
        close_writer(db.engine)
        db.engine.dispose()
