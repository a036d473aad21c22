"""The login form and the home page per viewer, in chromium: a member sees
their boards, a share link its board, live."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ADMIN, start_live_server


@pytest.fixture
def server(tmp_path):
    s = start_live_server(tmp_path, JOBSERVER_VIEW_PASSWORD="pw")
    tokens = {}
    for name in ("alpha", "beta", "gamma"):
        r = requests.post(f"{s.url}/api/v1/boards", headers=ADMIN, json={"name": name},
                          timeout=30)
        tokens[name] = {"Authorization": f"Bearer {r.json()['token']}"}
    requests.post(f"{s.url}/api/v1/users", headers=ADMIN, timeout=30,
                  json={"name": "bob", "password": "bob-pw"}).raise_for_status()
    requests.post(f"{s.url}/api/v1/boards/beta/members", headers=tokens["beta"], timeout=30,
                  json={"user": "bob", "role": "viewer"}).raise_for_status()
    s.tokens = tokens  # type: ignore[attr-defined]
    yield s
    s.stop()


def rows(page) -> list[str]:
    return page.eval_on_selector_all("#boards tbody tr[data-board]",
                                     "trs => trs.map(t => t.dataset.board)")


def test_login_then_the_home_page_lists_the_members_boards_live(server, page):
    page.goto(server.url + "/login")
    page.screenshot(path="/tmp/auth_login.png", full_page=True)
    page.fill("input[name=name]", "bob")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong user name or password."
    page.fill("input[name=name]", "bob")
    page.fill("input[name=password]", "bob-pw")
    page.click("button[type=submit]")
    page.wait_for_selector("#boards")
    assert rows(page) == ["beta"]
    assert "bob" in page.locator("header .who").inner_text()
    page.wait_for_selector("#conn[data-state=live]")
    # live: a push to beta shows on its row; alpha's never arrive
    requests.post(f"{server.url}/api/v1/boards/alpha/jobs", headers=server.tokens["alpha"],
                  json=[{"key": "x"}], timeout=30).raise_for_status()
    requests.post(f"{server.url}/api/v1/boards/beta/jobs", headers=server.tokens["beta"],
                  json=[{"key": str(i)} for i in range(7)], timeout=30).raise_for_status()
    page.wait_for_function("document.querySelector('tr[data-board=beta]').innerText"
                           ".includes('0/7')", timeout=15000)
    assert rows(page) == ["beta"]
    page.screenshot(path="/tmp/auth_home_member.png", full_page=True)
    page.click("header .who button")
    page.wait_for_selector("input[name=password]")


def test_a_share_link_opens_its_board_and_lists_only_it(server, page):
    link = requests.post(f"{server.url}/api/v1/boards/gamma/share",
                         headers=server.tokens["gamma"], timeout=30).json()
    page.goto(link["url"])
    assert page.url == f"{server.url}/boards/gamma"
    assert page.context.request.get(f"{server.url}/boards/alpha").status == 403
    page.goto(server.url + "/")
    page.wait_for_selector("#boards")
    assert rows(page) == ["gamma"]
    page.screenshot(path="/tmp/auth_home_share.png", full_page=True)
    requests.delete(f"{server.url}/api/v1/boards/gamma/tokens/{link['id']}",
                    headers=server.tokens["gamma"], timeout=30).raise_for_status()
    # (page.context.request: the browser's cookies, without its password prompt)
    r = page.context.request.get(f"{server.url}/boards/gamma")
    assert r.status == 401
