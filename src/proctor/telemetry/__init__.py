"""Telemetry: governed calls as OpenTelemetry spans and Prometheus metrics (optional extras).

``enable()`` turns it on for the process; until then (and with neither extra
installed) a governed call pays one test of a module attribute. Tracing needs
``pip install 'proctor[otel]'`` (only ``opentelemetry-api``: the application
configures the SDK), metrics ``pip install 'proctor[prometheus]'``.
``proctor.telemetry.tracing`` and ``proctor.telemetry.metrics`` describe the
spans and the metrics; ``proctor.metrics.asgi_app()`` serves the metrics.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import TYPE_CHECKING

from proctor.errors import ConfigurationError
from proctor.telemetry import _hook

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from proctor.telemetry.metrics import Metrics

__all__ = ["current_metrics", "disable", "enable", "enabled", "ensure_metrics"]

_lock = threading.Lock()


def enable(
    *,
    tracing: bool | None = None,
    metrics: bool | None = None,
    tracer_provider: TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Turn telemetry on for every governed call of this process (again: replaces the previous setup).

    Parameters:
        tracing: a span per call; None: when ``opentelemetry-api`` is installed. A provider whose
            tracers are no-op tracers (``NoOpTracerProvider``, the SDK's with ``OTEL_SDK_DISABLED``)
            turns it off: such spans do nothing, so calls do not make them.
        metrics: Prometheus metrics; None: when ``prometheus-client`` is installed.
        tracer_provider: where spans go; the global one (``trace.set_tracer_provider``) if None,
            even when it is set after this call.
        registry: where the metrics are registered; prometheus-client's default ``REGISTRY`` if None.

    Raises ``ConfigurationError`` when ``tracing=True`` or ``metrics=True`` asks for an extra
    that is not installed.
    """
    want_tracing = _wanted(tracing, "opentelemetry", "otel", "opentelemetry-api")
    want_metrics = _wanted(metrics, "prometheus_client", "prometheus", "prometheus-client")
    with _lock:
        _stop()
        spans = None
        if want_tracing:
            from proctor.telemetry.tracing import Tracing

            spans = Tracing(tracer_provider)
            if spans.noop:  # a no-op provider (or the SDK disabled): its spans are nothing to make
                spans = None
        samples = None
        if want_metrics:
            from proctor.telemetry.metrics import Metrics

            samples = Metrics(registry)
        if spans is not None or samples is not None:
            _hook.active = _hook.CallTelemetry(spans, samples)


def disable() -> None:
    """Turn telemetry off: calls make no spans, and proctor's metrics leave their registry."""
    with _lock:
        _stop()


def enabled() -> bool:
    """Whether ``enable()`` turned telemetry on."""
    return _hook.active is not None


def current_metrics() -> Metrics | None:
    """The metrics ``enable()`` registered, if it did."""
    active = _hook.active
    return active.metrics if active is not None else None


def ensure_metrics() -> Metrics:
    """The metrics ``enable()`` registered; if it did not, turn them on in prometheus-client's
    default registry, keeping tracing as it is."""
    with _lock:
        active = _hook.active
        if active is not None and active.metrics is not None:
            return active.metrics
        from proctor.telemetry.metrics import Metrics

        samples = Metrics(None)
        _hook.active = _hook.CallTelemetry(active.tracing if active is not None else None, samples)
        return samples


def _stop() -> None:
    active = _hook.active
    _hook.active = None
    if active is not None and active.metrics is not None:
        active.metrics.unregister()


def _wanted(asked: bool | None, module: str, extra: str, package: str) -> bool:
    installed = importlib.util.find_spec(module) is not None
    if asked and not installed:
        raise ConfigurationError(
            f"{extra} telemetry needs {package}, which is not installed; in proctor's clone, "
            f"pip install -e '.[{extra}]'"
        )
    return installed if asked is None else asked
