"""Fixtures of the telemetry tests: real spans in the OTel SDK's in-memory exporter, metrics in a registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from proctor import telemetry


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into an SDK tracer provider whose spans end up in this exporter (metrics off)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(tracing=True, metrics=False, tracer_provider=provider)
    yield exporter
    telemetry.disable()
    provider.shutdown()


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Metrics on, in a registry of the test's own (tracing off)."""
    registry = CollectorRegistry()
    telemetry.enable(tracing=False, metrics=True, registry=registry)
    yield registry
    telemetry.disable()
