"""Sign-in by approver token: the sign-in and sign-out pages, and the middleware that requires it."""

from __future__ import annotations

import hashlib
import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proctor.web.csrf import posted_form
from proctor.web.state import console_of

__all__ = ["SignInRequired", "login", "logout", "signed_in"]

logger = logging.getLogger("proctor.web")

PUBLIC = ("/login", "/static/", "/metrics")
"""Paths (prefixes) served without signing in."""


def _token_key(token_hash: str) -> str:
    """What a session keeps of its person's token: it ends the session when the token is replaced."""
    return hashlib.sha256(token_hash.encode()).hexdigest()[:32]


def signed_in(request: Request) -> str | None:
    """The name of the person signed in on this session, while they are listed with the same token."""
    name = request.session.get("person")
    key = request.session.get("key")
    if not isinstance(name, str) or not isinstance(key, str):
        return None
    person = console_of(request).approvers.current().people.get(name)
    if person is None or person.token is None or not hmac.compare_digest(_token_key(person.token), key):
        return None
    return name


class SignInRequired:
    """Sends requests without a signed-in session to the sign-in page (``/api/``: 401 in JSON).

    Needs Starlette's ``SessionMiddleware`` around it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if signed_in(request) is not None:
            await self.app(scope, receive, send)
            return
        request.session.pop("person", None)  # signed out, removed from the file, or given a new token
        request.session.pop("key", None)
        response: Response
        if scope["path"].startswith("/api/"):
            response = JSONResponse({"error": "sign in first"}, status_code=401)
        else:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = request.url_for("login").include_query_params(next=wanted)
            response = RedirectResponse(target, status_code=303)
        await response(scope, receive, send)


def _local(path: str | None) -> str:
    """``path`` when it is a path on this site, else the approvals page (no open redirects)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return "/approvals"


async def login(request: Request) -> Response:
    """``GET /login``: the sign-in form; ``POST /login``: sign in with a token."""
    console = console_of(request)
    wanted = _local(request.query_params.get("next"))
    if request.method in ("GET", "HEAD"):
        if signed_in(request) is not None:
            return RedirectResponse(wanted, status_code=303)
        return console.templates.TemplateResponse(request, "login.html", {"next": wanted, "error": ""})
    form = await posted_form(request)
    wanted = _local(str(form.get("next") or ""))
    token = str(form.get("token") or "").strip()
    approvers = console.approvers.current()
    name = approvers.who(token) if token else None
    person = approvers.people.get(name) if name is not None else None
    if person is None or person.token is None:
        logger.warning("sign-in refused: a token that is nobody's, from %s", request.client)
        error = (
            f"That token is not an approver's in {console.approvers.path}. "
            "`proctor approvers add NAME --group GROUP` issues one (and replaces an earlier one)."
        )
        context = {"next": wanted, "error": error}
        return console.templates.TemplateResponse(request, "login.html", context, status_code=401)
    request.session.clear()  # a new session: a new CSRF token too
    request.session.update({"person": person.name, "key": _token_key(person.token)})
    logger.info("%s signed in", person.name)
    return RedirectResponse(wanted, status_code=303)


async def logout(request: Request) -> Response:
    """``POST /logout``: end the session."""
    await posted_form(request)
    request.session.clear()
    return RedirectResponse(request.url_for("login"), status_code=303)
