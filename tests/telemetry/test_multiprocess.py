"""Multiprocess mode: the samples of several worker processes, summed by the process that serves them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from proctor.approvals.store import ApprovalStore
from proctor.web.app import create_app
from tests.servers import end_process, free_port
from tests.telemetry._processes import COST, SERVICE
from tests.web.conftest import People, ask

ROOT = Path(__file__).resolve().parents[2]
CALLS = 3


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def workers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory two worker processes wrote their samples to (they ran at once, and ended)."""
    folder = tmp_path_factory.mktemp("prometheus-multiproc")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PROCTOR_RECORD": "off"}
    command = [sys.executable, "-m", "tests.telemetry._processes", "calls", str(CALLS)]
    workers = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(60) == 0
    assert len(list(folder.glob("counter_*.db"))) == 2  # one file of counters per process
    return folder


@pytest.fixture
def metrics_server(workers_dir: Path) -> Iterator[str]:
    """A third process serving proctor.metrics.asgi_app() with uvicorn on a free port: its URL."""
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(workers_dir), "PROCTOR_RECORD": "off"}
    command = [sys.executable, "-m", "tests.telemetry._processes", "serve", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, "the metrics server exited"
                assert time.monotonic() < deadline, "the metrics server did not start"
                time.sleep(0.05)
        yield url
    finally:
        end_process(server, 10)


def test_a_scrape_sums_the_samples_of_every_worker_process(metrics_server: str) -> None:
    with urllib.request.urlopen(metrics_server, timeout=10) as response:
        assert response.status == 200
        samples = samples_of(response.read().decode())
    decisions = "proctor_decisions_total"
    assert samples[decisions, (("action", "allow"), ("rule", ""), ("service", SERVICE))] == 2 * CALLS
    assert samples[decisions, (("action", "deny"), ("rule", "no-prod"), ("service", SERVICE))] == 2
    assert samples["proctor_spend_total", (("agent", "worker"), ("service", SERVICE))] == 2 * CALLS * COST
    assert samples["proctor_store_fallbacks_total", (("kind", "rate"), ("mode", "closed"))] == 2


def test_the_console_adds_the_workers_metrics_to_the_queue_s_pending_approvals(
    workers_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proctor.approvals.approvers import Approvers

    approvers = Approvers(path=tmp_path / "approvers.yaml")
    approvers.add("alice", ["dba"])
    db = tmp_path / "proctor.db"
    with ApprovalStore(db, pii=False) as store:
        ask(store, "run-1")
        ask(store, "run-2")
    people = People(tmp_path / "approvers.yaml", {})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(workers_dir))
    app = create_app(db=db, approvers=people.path, secret="test secret")
    with TestClient(app, follow_redirects=False) as client:
        response = client.get("/metrics")  # no sign-in: a scraper has none
    assert response.status_code == 200, response.text
    samples = samples_of(response.text)
    assert samples["proctor_approvals_pending", ()] == 2
    key = ("proctor_decisions_total", (("action", "allow"), ("rule", ""), ("service", SERVICE)))
    assert samples[key] == 2 * CALLS
