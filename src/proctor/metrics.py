"""``proctor.metrics.asgi_app()``: proctor's Prometheus metrics, to mount in an application.

Needs the ``prometheus`` extra (prometheus-client). ``proctor.telemetry.metrics``
lists the metrics; ``proctor.telemetry.enable()`` turns them on (``asgi_app()``
does, if nothing did yet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proctor import telemetry
from proctor.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["asgi_app"]


def asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app that answers every GET with proctor's metrics in Prometheus' text format.

    Mount it in a Starlette or FastAPI application (``Mount("/metrics", proctor.metrics.asgi_app())``).
    It turns the metrics on (``telemetry.enable(metrics=True)``, keeping tracing as it is) unless
    they are on already. It serves ``registry`` when given; else the registry the metrics are in
    (``prometheus_client.REGISTRY`` by default, with whatever else the application registered
    there); else, when ``PROMETHEUS_MULTIPROC_DIR`` is set, the sum over every worker process that
    writes to that directory.

    Raises ``ConfigurationError`` when prometheus-client is not installed.
    """
    try:
        from proctor.telemetry import metrics as samples
    except ImportError as exc:
        raise ConfigurationError(
            f"proctor's metrics need its 'prometheus' extra ({exc.name} is missing); in proctor's clone, "
            "pip install -e '.[prometheus]'"
        ) from None
    return samples.asgi_app(telemetry.ensure_metrics(), registry)
