"""The processes of the multiprocess test: ``calls N`` makes governed calls, ``serve PORT`` serves metrics.

Both run with ``PROMETHEUS_MULTIPROC_DIR`` set, as the workers of a gunicorn or
uvicorn server do: each writes its samples to files there, and the server's
``proctor.metrics.asgi_app()`` sums them.
"""

from __future__ import annotations

import contextlib
import sys

from proctor import RuleViolationError, runlog, telemetry
from proctor.stores.fallback import count_fallback

SERVICE = "multi"
COST = 0.25
RULES = {"policies": [{"id": "no-prod", "when": {"tool": "query", "args.db": "prod"}, "action": "deny"}]}


def calls(count: int) -> None:
    """``count`` allowed calls, one denied, one store fallback."""
    telemetry.enable(tracing=False, metrics=True)

    @runlog(service=SERVICE, agent="worker", name="query", policies=RULES, cost=COST, record=False)
    def query(db: str) -> str:
        return db

    for _ in range(count):
        query("staging")
    with contextlib.suppress(RuleViolationError):
        query("prod")
    count_fallback("rate", "closed")


def serve(port: int) -> None:
    import uvicorn

    import proctor.metrics

    uvicorn.run(proctor.metrics.asgi_app(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    if sys.argv[1] == "calls":
        calls(int(sys.argv[2]))
    else:
        serve(int(sys.argv[2]))
