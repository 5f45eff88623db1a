"""Sign-in: every page and action needs it, tokens come from the approvers file, sessions are signed."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from proctor.approvals.approvers import Approvers
from tests.web.conftest import People, csrf_of, sign_in

PAGES = ["/", "/approvals", "/approvals/abc", "/runs", "/runs/abc?x=1", "/policies"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_stranger_to_sign_in(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("http://testserver/login?next=")


@pytest.mark.parametrize("path", ["/api/approvals", "/api/approvals/abc"])
def test_the_json_endpoints_answer_401_to_a_stranger(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == {"error": "sign in first"}


@pytest.mark.parametrize("path", ["/logout", "/approvals/abc/decide"])
def test_every_action_sends_a_stranger_to_sign_in(client: TestClient, path: str) -> None:
    response = client.post(path, data={"decision": "approve"})
    assert response.status_code == 303
    assert "/login" in response.headers["location"]


def test_the_sign_in_page_and_the_stylesheet_need_no_session(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert "proctor approvers add" in page.text
    assert client.head("/login").status_code == 200
    assert client.get("/static/console.css").status_code == 200


def test_signing_in_leads_to_the_page_asked_for(client: TestClient, people: People) -> None:
    first = client.get("/runs?status=failed")
    login = client.get(first.headers["location"])
    assert 'name="next" value="/runs?status=failed"' in login.text
    response = client.post(
        "/login",
        data={
            "token": people.tokens["alice"],
            "csrf_token": csrf_of(login.text),
            "next": "/runs?status=failed",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/runs?status=failed"
    page = client.get("/runs?status=failed")
    assert page.status_code == 200
    assert "signed in as <strong>alice</strong>" in page.text


def test_a_token_that_is_nobodys_is_refused(client: TestClient, people: People) -> None:
    login = client.get("/login")
    response = client.post("/login", data={"token": "guess", "csrf_token": csrf_of(login.text)})
    assert response.status_code == 401
    assert "That token is not an approver&#39;s" in response.text
    assert client.get("/approvals").status_code == 303


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "approvals"]
)
def test_sign_in_never_redirects_off_the_console(client: TestClient, people: People, target: str) -> None:
    login = client.get("/login")
    response = client.post(
        "/login", data={"token": people.tokens["bob"], "csrf_token": csrf_of(login.text), "next": target}
    )
    assert response.headers["location"] == "/approvals"


def test_signing_out_ends_the_session(client: TestClient, people: People) -> None:
    csrf = sign_in(client, people.tokens["alice"])
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert client.get("/approvals").status_code == 303


def test_a_new_token_or_leaving_the_file_ends_earlier_sessions(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["alice"])
    assert client.get("/approvals").status_code == 200
    Approvers.load(people.path).add("alice", ["dba"])  # a new token; the old one stops working
    assert client.get("/approvals").status_code == 303
    login = client.get("/login")
    refused = client.post("/login", data={"token": people.tokens["alice"], "csrf_token": csrf_of(login.text)})
    assert refused.status_code == 401


def test_the_session_cookie_is_signed_http_only_and_same_site(client: TestClient, people: People) -> None:
    login = client.get("/login")
    response = client.post(
        "/login", data={"token": people.tokens["alice"], "csrf_token": csrf_of(login.text)}
    )
    set_cookie = response.headers["set-cookie"].lower()
    assert "proctor_session=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    assert client.get("/approvals").status_code == 200
    value = client.cookies["proctor_session"]
    client.cookies.clear()
    client.cookies.set("proctor_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
    assert client.get("/approvals").status_code == 303


def test_pages_cannot_be_framed_or_cached(client: TestClient) -> None:
    headers = client.get("/login").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
