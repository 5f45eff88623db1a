"""The console's Starlette application: its routes, sessions, sign-in and security headers."""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proctor.approvals.store import ApprovalStore
from proctor.rules.source import PolicySource
from proctor.runs.log import RunLog
from proctor.web.approvals import approval_page, approval_state, approvals_page, approvals_state, decide
from proctor.web.auth import SignInRequired, login, logout
from proctor.web.policies import policies_page
from proctor.web.runs import run_page, runs_page
from proctor.web.state import ApproversFile, Console, console_of
from proctor.web.templating import make_templates

__all__ = ["SESSION_HOURS", "create_app"]

SESSION_HOURS = 12
"""How long a sign-in lasts."""

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds headers that keep the console out of frames and its pages out of caches."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _home(request: Request) -> Response:
    return RedirectResponse(request.url_for("approvals"), status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    """An error page (JSON under ``/api/``) that says what went wrong."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    titles = {400: "Bad request", 403: "Refused", 404: "Not found", 405: "Not allowed"}
    context = {
        "status_code": exc.status_code,
        "title": titles.get(exc.status_code, "Error"),
        "detail": exc.detail,
    }
    return console_of(request).templates.TemplateResponse(
        request, "error.html", context, status_code=exc.status_code
    )


def create_app(
    *,
    db: str | os.PathLike[str],
    approvers: str | os.PathLike[str],
    policies: Sequence[str | os.PathLike[str]] = (),
    secret: str | None = None,
    metrics: bool = True,
) -> Starlette:
    """The console over the database ``db``, signing people in with the tokens of the ``approvers`` file.

    Parameters:
        db: proctor's database (runs, actions, approvals): a SQLite file's path or a URL such as
            ``sqlite:///runs.db``; created when missing.
        approvers: the approvers file; it is reloaded when it changes.
        policies: the policy files whose rules the policies page shows; reloaded when they change.
        secret: the key that signs session cookies; ``$PROCTOR_SECRET``, else random (sign-ins
            then end when the process does).
        metrics: serve ``/metrics`` (Prometheus, no sign-in: see ``proctor.web.metrics``) when
            prometheus-client is installed.

    Raises ``ConfigurationError`` for an invalid approvers file or database URL,
    ``PolicyConfigError`` for an invalid policy file and ``StoreError`` when the database
    cannot be opened.
    """
    people = ApproversFile(Path(approvers))
    sources = tuple(PolicySource(file) for file in policies)
    ApprovalStore(db, pii=False).close()  # the database opens, at the current schema
    templates = make_templates()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with RunLog(db, pii=False) as log, ApprovalStore(db, pii=False) as store:
            app.state.console = Console(store.database, log, store, people, sources, templates)
            yield

    routes = [
        Route("/", _home, name="home"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/approvals", approvals_page, name="approvals"),
        Route("/approvals/{approval_id}", approval_page, name="approval"),
        Route("/approvals/{approval_id}/decide", decide, methods=["POST"], name="decide"),
        Route("/api/approvals", approvals_state, name="api_approvals"),
        Route("/api/approvals/{approval_id}", approval_state, name="api_approval"),
        Route("/runs", runs_page, name="runs"),
        Route("/runs/{run_id}", run_page, name="run"),
        Route("/policies", policies_page, name="policies"),
        Mount("/static", StaticFiles(packages=[("proctor.web", "static")]), name="static"),
    ]
    if metrics and importlib.util.find_spec("prometheus_client") is not None:
        from proctor.web.metrics import metrics_page

        routes.append(Route("/metrics", metrics_page, name="metrics"))
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secret or os.environ.get("PROCTOR_SECRET") or secrets.token_urlsafe(32),
            session_cookie="proctor_session",
            max_age=SESSION_HOURS * 3600,
            same_site="lax",
        ),
        Middleware(SignInRequired),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
