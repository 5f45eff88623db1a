"""Decorated agents at module level, so that replay can import them by ``module:qualname``.

Every tool counts its real executions in ``CALLS``: a replay that answers a call from the
recording leaves the count alone, a call that really runs moves it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from proctor import BudgetPolicy, PolicyEnforcer, current_run, now, rng, runlog, uuid4

SERVICE = "shop"

CALLS: Counter[str] = Counter()
"""How often each tool really ran."""

BUDGET = BudgetPolicy(default_limit=1000.0)
"""The budget of ``charge_card``, checked by a code policy."""


@dataclass(frozen=True)
class Quote:
    sku: str
    price: float
    tags: list[str] = field(default_factory=list)


class Invoice(BaseModel):
    number: str
    total: float
    lines: list[str]


# -- tools


@runlog(service=SERVICE, cost=0.5)
def search(query: str, limit: int = 2) -> dict[str, Any]:
    CALLS["search"] += 1
    return {"hits": [f"{query}-{index}" for index in range(limit)]}


@runlog(service=SERVICE, cost=1.0)
def llm(prompt: str) -> dict[str, Any]:
    """Reports its cost as ``usage.cost`` on the result, as LLM clients do."""
    CALLS["llm"] += 1
    return {"text": prompt.upper(), "usage": {"cost": 0.25}}


@runlog(service=SERVICE)
async def asearch(query: str) -> list[str]:
    CALLS["asearch"] += 1
    await asyncio.sleep(0)
    current_run().add_cost(0.125)
    return [f"{query}!"]


class Offline(Exception):
    """Raised by ``fetch``; rebuilt from the recording in a replay."""


@runlog(service=SERVICE, cost=0.0625)
def fetch(url: str) -> str:
    CALLS["fetch"] += 1
    raise Offline(f"{url} is down")


@runlog(service=SERVICE)
def quote(sku: str) -> Quote:
    CALLS["quote"] += 1
    return Quote(sku, 9.5, ["new"])


@runlog(service=SERVICE)
def invoice(item: Quote) -> Invoice:
    CALLS["invoice"] += 1
    return Invoice(number=f"INV-{item.sku}", total=item.price * 2, lines=[item.sku, item.sku])


@runlog(service=SERVICE, on_deny="return")
def lookup(question: str) -> list[str]:
    """Refusals come back as text, for the agent to read."""
    CALLS["lookup"] += 1
    return [f"{question}: page 1"]


@runlog(service=SERVICE)
def backup(question: str) -> list[str]:
    CALLS["backup"] += 1
    return [f"{question}: cached"]


@runlog(service=SERVICE)
def summarize(pages: list[str]) -> str:
    CALLS["summarize"] += 1
    return " / ".join(pages)


@runlog(service=SERVICE)
def mail(to: str, body: str) -> str:
    CALLS["mail"] += 1
    return f"sent {body!r} to {to}"


@runlog(service=SERVICE, cost=2.0, policies=PolicyEnforcer([BUDGET]))
def charge_card(amount: float) -> str:
    CALLS["charge_card"] += 1
    return f"charged {amount}"


# -- agents: the top-level functions of runs


@runlog(service=SERVICE)
def answer(question: str) -> str:
    """search (0.5, its estimate) then llm (0.25, its usage.cost): a run of 0.75."""
    if not question:
        raise ValueError("empty question")
    hits = search(question)
    reply = llm(", ".join(hits["hits"]))
    return str(reply["text"])


@runlog(service=SERVICE)
def stamped(question: str) -> dict[str, Any]:
    """Output made of the clock, a uuid and the run's random numbers, and a tool call that uses them."""
    when = now()
    ident = uuid4()
    roll = rng().randint(0, 10**9)
    hits = search(f"{question}-{roll % 7}")
    return {"at": when.isoformat(), "id": str(ident), "roll": roll, "again": rng().random(), "hits": hits}


@runlog(service=SERVICE)
async def answer_async(question: str) -> str:
    """An async run: two async tool calls at once, then a plain one."""
    first, second = await asyncio.gather(asearch(question), asearch(question + "?"))
    reply = llm(" ".join(first + second))
    return str(reply["text"])


@runlog(service=SERVICE)
def resilient(url: str) -> str:
    """Handles the error its tool raises."""
    try:
        return fetch(url)
    except Offline as exc:
        return f"offline: {exc}"


@runlog(service=SERVICE)
def checkout(sku: str) -> dict[str, Any]:
    item = quote(sku)
    bill = invoice(item)
    return {"quote": item, "invoice": bill, "total": bill.total}


@runlog(service=SERVICE)
def research(question: str) -> str:
    """Falls back to ``backup`` when ``lookup`` is refused: a path the recording may not have."""
    pages = lookup(question)
    if isinstance(pages, str):  # the refusal
        pages = backup(question)
    return summarize(pages)


@runlog(service=SERVICE)
def pay(amount: float) -> str:
    return charge_card(amount)


@runlog(service=SERVICE)
def notify(customer: str) -> str:
    return mail(customer, "your order shipped")
