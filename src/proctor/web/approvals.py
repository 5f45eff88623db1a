"""The approvals pages: pending requests with their context, one request's history, and decisions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from proctor.approvals.store import ApprovalError, ApprovalRecord, DecisionRecord
from proctor.runs.log import ActionRecord, RunRecord
from proctor.web.auth import signed_in
from proctor.web.csrf import posted_form
from proctor.web.state import Console, console_of

__all__ = ["approval_page", "approval_state", "approvals_page", "approvals_state", "decide"]

PENDING_LIMIT = 100
"""Pending requests shown at most, newest first."""

RECENT = 20
"""Decided (or expired, cancelled) requests listed under the pending ones."""

COMMENT_LIMIT = 2000
"""Characters a comment may have."""


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request with what a person needs to decide it.

    ``refusal`` says why the signed-in person may not decide it (None: they may).
    """

    record: ApprovalRecord
    decisions: list[DecisionRecord]
    run: RunRecord | None
    actions: list[ActionRecord]
    refusal: str | None

    @property
    def approvals(self) -> int:
        """How many people approved so far."""
        return sum(decision.approved for decision in self.decisions)


def _view(console: Console, record: ApprovalRecord, person: str) -> RequestView:
    approvers = console.approvers.current()
    refusal = approvers.refusal(person, record.approvers)
    if refusal is not None:
        groups = record.approvers
        members = sorted({name for group in groups for name in approvers.members(group)})
        who = f"members of {', '.join(groups)} may ({', '.join(members) or 'nobody yet'})"
        refusal = (
            f"You may not decide this request: {refusal}; {who if groups else 'any listed approver may'}."
        )
    return RequestView(
        record,
        console.store.decisions(record.id),
        console.log.run(record.run_id),
        console.log.actions(record.run_id),
        refusal,
    )


def _version(parts: Any) -> str:
    """A short fingerprint of what a page shows, so its live refresh sees when it changed."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _list_state(console: Console) -> tuple[list[ApprovalRecord], list[ApprovalRecord], str]:
    pending = console.store.list(status="pending", limit=PENDING_LIMIT)
    recent = [record for record in console.store.list(limit=PENDING_LIMIT + RECENT) if not record.pending]
    counts = [len(console.store.decisions(record.id)) for record in pending]
    version = _version(
        [[r.id for r in pending], counts, [[r.id, r.status] for r in recent[:RECENT]]],
    )
    return pending, recent[:RECENT], version


def _person(request: Request) -> str:
    person = signed_in(request)
    if person is None:  # SignInRequired lets no such request through
        raise HTTPException(401, "Sign in first.")
    return person


def _record(console: Console, approval_id: str) -> ApprovalRecord:
    try:
        return console.store.get(approval_id)
    except ApprovalError:
        detail = f"There is no approval request {approval_id!r} in {console.database}."
        raise HTTPException(404, detail) from None


def approvals_page(request: Request) -> Response:
    """``GET /approvals``: the pending requests, newest first, then the latest decided ones."""
    console = console_of(request)
    person = _person(request)
    pending, recent, version = _list_state(console)
    context = {
        "section": "approvals",
        "pending": [_view(console, record, person) for record in pending],
        "recent": recent,
        "version": version,
        "flash": request.session.pop("flash", None),
    }
    return console.templates.TemplateResponse(request, "approvals.html", context)


def approvals_state(request: Request) -> Response:
    """``GET /api/approvals``: the pending requests in JSON, and the list page's version."""
    console = console_of(request)
    pending, _, version = _list_state(console)
    items = [
        {
            "id": record.id,
            "run_id": record.run_id,
            "service": record.service,
            "agent": record.agent,
            "tool": record.tool,
            "rule_id": record.rule_id,
            "rule_name": record.rule_name,
            "message": record.message,
            "approvers": list(record.approvers),
            "quorum": record.quorum,
            "created": record.created,
            "deadline": record.deadline,
            "url": str(request.url_for("approval", approval_id=record.id)),
        }
        for record in pending
    ]
    return JSONResponse({"version": version, "pending": items})


def _detail_version(record: ApprovalRecord, decisions: list[DecisionRecord]) -> str:
    return _version([record.status, len(decisions)])


def approval_page(request: Request) -> Response:
    """``GET /approvals/{approval_id}``: one request, its run so far, and who decided what, when."""
    console = console_of(request)
    view = _view(console, _record(console, request.path_params["approval_id"]), _person(request))
    return _render_detail(request, console, view, request.session.pop("flash", None))


def _render_detail(
    request: Request,
    console: Console,
    view: RequestView,
    flash: dict[str, str] | None,
    status_code: int = 200,
) -> Response:
    context = {
        "section": "approvals",
        "view": view,
        "version": _detail_version(view.record, view.decisions),
        "flash": flash,
    }
    return console.templates.TemplateResponse(request, "approval.html", context, status_code=status_code)


def approval_state(request: Request) -> Response:
    """``GET /api/approvals/{approval_id}``: the request's status and decisions in JSON."""
    console = console_of(request)
    record = _record(console, request.path_params["approval_id"])
    decisions = console.store.decisions(record.id)
    return JSONResponse(
        {
            "version": _detail_version(record, decisions),
            "id": record.id,
            "status": record.status,
            "decisions": [
                {"approver": d.approver, "approved": d.approved, "comment": d.comment, "at": d.at}
                for d in decisions
            ],
        }
    )


async def decide(request: Request) -> Response:
    """``POST /approvals/{approval_id}/decide``: approve or deny, with a comment, as the signed-in person."""
    console = console_of(request)
    form = await posted_form(request)
    person = _person(request)
    choice = form.get("decision")
    if choice not in ("approve", "deny"):
        raise HTTPException(400, "A decision is approve or deny.")
    comment = str(form.get("comment") or "")
    if len(comment) > COMMENT_LIMIT:
        raise HTTPException(
            400, f"A comment has {COMMENT_LIMIT} characters at most; this one {len(comment)}."
        )
    approval_id = request.path_params["approval_id"]
    record = await run_in_threadpool(_record, console, approval_id)
    view = await run_in_threadpool(_view, console, record, person)
    if view.refusal is not None:
        flash = {"kind": "error", "text": view.refusal}
        return await run_in_threadpool(_render_detail, request, console, view, flash, 403)
    try:
        after = await run_in_threadpool(
            console.store.decide,
            approval_id,
            person,
            choice == "approve",
            comment,
            console.approvers.current(),
        )
    except ApprovalError as exc:
        view = await run_in_threadpool(_view, console, record, person)
        flash = {"kind": "error", "text": f"Your decision was not recorded: {exc}."}
        return await run_in_threadpool(_render_detail, request, console, view, flash, 409)
    said = "approved" if choice == "approve" else "denied"
    if after.pending:
        approvals = sum(d.approved for d in await run_in_threadpool(console.store.decisions, approval_id))
        outcome = f"it needs {after.quorum} approvals and has {approvals}, so it is still pending"
    else:
        outcome = f"it is now {after.status}"
    request.session["flash"] = {
        "kind": "ok",
        "text": f"You {said} {record.tool} for {record.agent}: {outcome}.",
    }
    back = form.get("back")
    target = (
        request.url_for("approvals")
        if back == "list"
        else request.url_for("approval", approval_id=approval_id)
    )
    return RedirectResponse(target, status_code=303)
