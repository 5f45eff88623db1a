"""The console's Jinja2 templates (package data in ``proctor/web/templates``) and what every page gets."""

from __future__ import annotations

import time
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from proctor.web.csrf import csrf_token
from proctor.web.format import FILTERS, percent

__all__ = ["make_templates"]


def _page_context(request: Request) -> dict[str, Any]:
    """The signed-in person's name, the session's CSRF token (for every form), and the time now."""
    return {"person": request.session.get("person"), "csrf_token": csrf_token(request), "now": time.time()}


def make_templates() -> Jinja2Templates:
    """The templates, autoescaped, with the console's filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("proctor.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["percent"] = percent
    return Jinja2Templates(env=env, context_processors=[_page_context])
