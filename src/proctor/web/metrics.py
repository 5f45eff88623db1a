"""``GET /metrics``: the console's Prometheus metrics, served without signing in (scrapers do not).

It reports ``proctor_approvals_pending``, the durable queue's pending requests in
the console's database. With ``PROMETHEUS_MULTIPROC_DIR`` set to the directory
the agents' processes on this host write their samples to, it adds their
metrics, summed (``proctor.telemetry.metrics``); their own count of calls
waiting for a person gives way to the queue's.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from proctor.approvals.store import ApprovalStore
from proctor.telemetry.metrics import APPROVALS_PENDING, multiprocess, scrape_registry
from proctor.web.state import console_of

__all__ = ["metrics_page"]


class PendingApprovals(Collector):
    """``proctor_approvals_pending``: the requests of the durable queue that wait for a decision."""

    def __init__(self, store: ApprovalStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(APPROVALS_PENDING, "Approval requests waiting for people's decisions.")
        family.add_metric((), len(self._store.list("pending", None)))
        yield family


def metrics_page(request: Request) -> Response:
    """``GET /metrics``, in Prometheus' text format (a plain function: Starlette runs it on a thread,
    as the database read may wait)."""
    registry = (
        scrape_registry(None, without=(APPROVALS_PENDING,))
        if multiprocess()
        else CollectorRegistry(auto_describe=False)
    )
    registry.register(PendingApprovals(console_of(request).store))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
