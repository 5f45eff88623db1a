"""Governed calls as Prometheus metrics, scraped over HTTP from ``proctor.metrics.asgi_app()``."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import proctor.metrics
from proctor import LOCOScheduler, RuleViolationError, SharedResource, runlog
from proctor.approvals import CallbackChannel
from proctor.approvals.base import ApprovalRequest
from proctor.stores import MemoryStore, set_store
from proctor.stores.fallback import count_fallback

_names = itertools.count()

RULES = {
    "policies": [
        {"id": "no-prod", "when": {"tool": "query", "args.db": "prod"}, "action": "deny"},
        {"id": "audit", "when": {"tool": "query", "args.db": "audit"}, "action": "log"},
        {"id": "ask-drop", "when": {"tool": "drop"}, "action": "require_approval", "approvers": ["dba"]},
    ],
    "budgets": [{"id": "daily", "per": "agent", "limit": 10.0}],
}


@pytest.fixture(autouse=True)
def _own_store() -> Iterator[None]:
    set_store(MemoryStore())
    yield
    set_store(None)


def service() -> str:
    return f"met-{next(_names)}"


def scrape(
    client: TestClient, path: str = "/metrics/"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples served at ``path``, by name and labels."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def client(registry: CollectorRegistry) -> Iterator[TestClient]:
    """A user's application with proctor's metrics mounted at /metrics."""
    app = Starlette(routes=[Mount("/metrics", app=proctor.metrics.asgi_app())])
    with TestClient(app) as client:
        yield client


def test_decisions_and_spend_are_counted_by_low_cardinality_labels(client: TestClient) -> None:
    name = service()

    @runlog(service=name, agent="analyst", name="query", policies=RULES, cost=0.5, record=False)
    def query(db: str) -> str:
        return db

    for db in ("staging", "staging", "audit"):
        query(db)
    with pytest.raises(RuleViolationError):
        query("prod")
    samples = scrape(client)
    decisions = "proctor_decisions_total"
    assert samples[decisions, (("action", "allow"), ("rule", ""), ("service", name))] == 2
    assert samples[decisions, (("action", "log"), ("rule", "audit"), ("service", name))] == 1
    assert samples[decisions, (("action", "deny"), ("rule", "no-prod"), ("service", name))] == 1
    assert samples["proctor_spend_total", (("agent", "analyst"), ("service", name))] == 1.5
    assert samples["proctor_budget_remaining", (("agent", "analyst"), ("policy", "daily"))] == 8.5
    labels = {key for (metric, labelled) in samples if metric.startswith("proctor_") for key, _ in labelled}
    assert labels <= {"action", "rule", "service", "agent", "policy", "le", "kind", "mode"}


def test_slot_waits_are_a_histogram(client: TestClient) -> None:
    name = service()
    scheduler = LOCOScheduler([], SharedResource(f"{name}-slot", capacity=1))
    inside = threading.Event()
    release = threading.Event()

    @runlog(service=name, name="slow", scheduler=scheduler, record=False)
    def slow(hold: bool) -> None:
        if hold:
            inside.set()
            assert release.wait(10)

    holder = threading.Thread(target=slow, args=(True,))
    holder.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=slow, args=(False,))
    waiter.start()
    threading.Timer(0.05, release.set).start()  # the second call waits for the first one's slot
    holder.join(10)
    waiter.join(10)
    samples = scrape(client)
    assert samples["proctor_slot_wait_seconds_count", (("service", name),)] == 2
    assert samples["proctor_slot_wait_seconds_sum", (("service", name),)] > 0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (metric, labels), value in samples.items()
        if metric == "proctor_slot_wait_seconds_bucket" and dict(labels)["service"] == name
    )
    assert buckets[-1] == (float("inf"), 2)
    assert buckets[0][1] >= 1  # the first call got its slot at once
    scheduler.shutdown()


def test_calls_waiting_for_a_person_are_pending_approvals(client: TestClient) -> None:
    seen: list[float] = []

    def person(request: ApprovalRequest) -> bool:
        seen.append(scrape(client)["proctor_approvals_pending", ()])
        return True

    @runlog(service=service(), name="drop", policies=RULES, approvals=CallbackChannel(person), record=False)
    def drop(table: str) -> str:
        return table

    assert drop("orders") == "orders"
    assert seen == [1]
    samples = scrape(client)
    assert samples["proctor_approvals_pending", ()] == 0


def test_store_fallbacks_are_read_when_scraped(client: TestClient) -> None:
    key = ("proctor_store_fallbacks_total", (("kind", "budget"), ("mode", "open")))
    before = scrape(client).get(key, 0.0)
    count_fallback("budget", "open")
    count_fallback("budget", "open")
    assert scrape(client)[key] == before + 2


def test_asgi_app_turns_the_metrics_on_in_the_default_registry() -> None:
    from proctor import telemetry

    try:
        app = Starlette(routes=[Mount("/metrics", app=proctor.metrics.asgi_app())])
        assert telemetry.enabled()

        @runlog(service="met-default", name="ping", record=False)
        def ping() -> None:
            return None

        ping()
        with TestClient(app) as client:
            samples = scrape(client)
        key = ("proctor_decisions_total", (("action", "allow"), ("rule", ""), ("service", "met-default")))
        assert samples[key] == 1
        assert any(metric.startswith("python_") for metric, _ in samples)  # the default registry's own
    finally:
        telemetry.disable()
    assert not telemetry.enabled()


def test_calls_of_many_threads_count_once_each_after_their_threads_end(client: TestClient) -> None:
    name = service()

    @runlog(service=name, agent="pool", name="work", cost=0.125, record=False)
    def work(n: int) -> int:
        return n

    key = ("proctor_decisions_total", (("action", "allow"), ("rule", ""), ("service", name)))
    spend = ("proctor_spend_total", (("agent", "pool"), ("service", name)))
    threads = [threading.Thread(target=lambda: [work(n) for n in range(50)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    first = scrape(client)  # while some may still run: never more than were made
    for thread in threads:
        thread.join()
    assert first.get(key, 0) <= 200
    for _ in range(2):  # the ended threads' counts are folded once, then stay
        samples = scrape(client)
        assert samples[key] == 200
        assert samples[spend] == 25.0
    work(0)
    assert scrape(client)[key] == 201


def test_decisions_are_what_the_run_log_says_took_effect(client: TestClient) -> None:
    name = service()
    rules = {
        "defaults": {"action": "deny"},
        "policies": [
            {"id": "audit-chat", "when": {"tool": "chat"}, "action": "log"},
        ],
        "budgets": [
            {
                "id": "cheaper",
                "per": "agent",
                "limit": 0.5,
                "mode": "downgrade",
                "set": {"args.model": "small"},
            }
        ],
    }

    @runlog(service=name, agent="bot", name="chat", policies=rules, cost=0.4, on_deny="return", record=False)
    def chat(model: str) -> str:
        return model

    @runlog(service=name, agent="bot", name="other", policies=rules, on_deny="return", record=False)
    def other() -> str:
        return "ran"

    assert chat("big") == "big"  # the rule logs it
    assert chat("big") == "small"  # past its budget: downgraded, and still logged by the rule
    assert other().startswith("Denied by policy default")
    samples = scrape(client)

    def decided(action: str, rule: str) -> float:
        return samples.get(
            ("proctor_decisions_total", (("action", action), ("rule", rule), ("service", name))), 0
        )

    assert decided("log", "audit-chat") == 2  # the rules' log stands; the downgrade does not replace it
    assert decided("deny", "default") == 1


def test_a_budget_of_code_reports_each_agent_that_called(client: TestClient) -> None:
    from proctor import BudgetPolicy, PolicyEnforcer

    budget = BudgetPolicy(default_limit=5.0)
    budget.name = f"code-{service()}"
    enforcer = PolicyEnforcer([budget])
    first = runlog(service=service(), agent="a", policies=enforcer, cost=1.0, record=False)(lambda: None)
    second = runlog(service=service(), agent="b", policies=enforcer, cost=2.0, record=False)(lambda: None)
    first()
    second()
    second()
    first()
    samples = scrape(client)
    assert samples["proctor_budget_remaining", (("agent", "a"), ("policy", budget.name))] == 3.0
    assert samples["proctor_budget_remaining", (("agent", "b"), ("policy", budget.name))] == 1.0
