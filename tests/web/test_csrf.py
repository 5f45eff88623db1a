"""CSRF: every form carries the session's token, and every POST without it is refused with 403."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from proctor.approvals.store import ApprovalStore
from tests.web.conftest import People, ask, csrf_of, sign_in


def post_routes(app: Starlette) -> list[str]:
    return sorted(
        route.path for route in app.routes if isinstance(route, Route) and "POST" in (route.methods or ())
    )


def test_the_console_has_these_actions(app: Starlette) -> None:
    assert post_routes(app) == ["/approvals/{approval_id}/decide", "/login", "/logout"]


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_every_post_without_the_sessions_token_is_refused(
    app: Starlette, client: TestClient, people: People, store: ApprovalStore, token: str | None
) -> None:
    record = ask(store)
    sign_in(client, people.tokens["alice"])
    for path in post_routes(app):
        data = {"decision": "approve", "token": people.tokens["alice"]}
        if token is not None:
            data["csrf_token"] = token
        response = client.post(path.replace("{approval_id}", record.id), data=data)
        assert response.status_code == 403, path
        assert "did not come from this console" in response.text
    assert store.get(record.id).pending
    assert store.decisions(record.id) == []
    assert client.get("/approvals").status_code == 200  # still signed in: logout was refused too


def test_another_sessions_token_is_refused(
    app: Starlette, people: People, store: ApprovalStore, client: TestClient
) -> None:
    record = ask(store)
    other = TestClient(app, follow_redirects=False)  # shares the running app of ``client``
    theirs = sign_in(other, people.tokens["carol"])
    sign_in(client, people.tokens["alice"])
    response = client.post(f"/approvals/{record.id}/decide", data={"decision": "deny", "csrf_token": theirs})
    assert response.status_code == 403
    assert store.get(record.id).pending


def test_signing_in_gives_the_session_a_new_token(client: TestClient, people: People) -> None:
    before = csrf_of(client.get("/login").text)
    after = sign_in(client, people.tokens["alice"])
    assert before != after


def test_every_form_carries_the_token(client: TestClient, people: People, store: ApprovalStore) -> None:
    record = ask(store)
    csrf = sign_in(client, people.tokens["alice"])
    for path in ["/approvals", f"/approvals/{record.id}", "/runs", "/policies"]:
        html = client.get(path).text
        forms = re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S)
        posted = [form for form in forms if 'method="post"' in form]
        assert posted, path
        for form in posted:
            assert f'name="csrf_token" value="{csrf}"' in form, (path, form)
