"""CSRF protection: one random token per session, sent in every form and checked on every POST."""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

__all__ = ["FIELD", "csrf_token", "posted_form"]

FIELD = "csrf_token"
"""The name of the hidden form field that carries the token."""


def csrf_token(request: Request) -> str:
    """The session's token, made on first use."""
    token = request.session.get(FIELD)
    if not isinstance(token, str):
        token = request.session[FIELD] = secrets.token_urlsafe(32)
    return token


async def posted_form(request: Request) -> FormData:
    """The request's form when it carries the session's token; a 403 ``HTTPException`` otherwise."""
    form = await request.form()
    sent = form.get(FIELD)
    expected = request.session.get(FIELD)
    if not isinstance(sent, str) or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(
            403, "This form has expired or did not come from this console: reload the page and try again."
        )
    return form
