"""The runs pages: a filterable list of runs, and one run with its action timeline and decisions."""

from __future__ import annotations

import time
from collections import Counter

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from proctor.errors import ConfigurationError
from proctor.runs.describe import approval_waits
from proctor.runs.log import RUN_STATUSES
from proctor.runs.selection import parse_age
from proctor.web.state import console_of

__all__ = ["run_page", "runs_page"]

LIMIT = 100
"""Runs listed at most, newest first."""


def runs_page(request: Request) -> Response:
    """``GET /runs?service=&status=&since=``: the newest runs that match."""
    console = console_of(request)
    params = request.query_params
    filters = {name: params.get(name, "").strip() for name in ("service", "status", "since")}
    errors = []
    status = filters["status"] or None
    if status is not None and status not in RUN_STATUSES:
        errors.append(f"unknown status {status!r}: it is one of {', '.join(RUN_STATUSES)}")
        status = None
    since = None
    if filters["since"]:
        try:
            since = time.time() - parse_age(filters["since"])
        except ConfigurationError as exc:
            errors.append(str(exc))
    records = console.log.runs(service=filters["service"] or None, status=status, since=since, limit=LIMIT)
    counts = Counter(action.run_id for action in console.log.actions_of([r.run_id for r in records]))
    context = {
        "section": "runs",
        "filters": filters,
        "statuses": RUN_STATUSES,
        "services": console.database.services(),
        "records": records,
        "counts": counts,
        "limit": LIMIT,
        "error": "; ".join(errors),
    }
    return console.templates.TemplateResponse(
        request, "runs.html", context, status_code=400 if errors else 200
    )


def run_page(request: Request) -> Response:
    """``GET /runs/{run_id}``: the run, its approval requests and its actions, with approval waits."""
    console = console_of(request)
    run_id = request.path_params["run_id"]
    run = console.log.run(run_id)
    if run is None:
        raise HTTPException(404, f"There is no run {run_id!r} in {console.database}.")
    actions = console.log.actions(run_id)
    approvals = console.store.of_run(run_id)
    context = {
        "section": "runs",
        "run": run,
        "actions": actions,
        "approvals": approvals,
        "waits": approval_waits(run, actions, approvals, time.time()),
    }
    return console.templates.TemplateResponse(request, "run.html", context)
