"""``proctor serve``'s /metrics: the durable queue's pending approvals, served without sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from proctor.approvals.approvers import Approvers
from proctor.approvals.store import ApprovalStore
from proctor.cli.main import cli
from proctor.web.app import create_app
from tests.web.conftest import ask


@pytest.fixture
def approvers(tmp_path: Path) -> Path:
    people = Approvers(path=tmp_path / "approvers.yaml")
    people.add("alice", ["dba"])
    return tmp_path / "approvers.yaml"


def test_metrics_need_no_sign_in_and_count_the_pending_requests(
    tmp_path: Path, approvers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    db = tmp_path / "proctor.db"
    app = create_app(db=db, approvers=approvers, secret="test secret")
    with TestClient(app, follow_redirects=False) as client, ApprovalStore(db, pii=False) as store:
        first = ask(store, "run-1")
        ask(store, "run-2")
        store.cancel(first.id)
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        families = {family.name: family for family in text_string_to_metric_families(response.text)}
        assert [sample.value for sample in families["proctor_approvals_pending"].samples] == [1]
        assert client.get("/approvals").status_code == 303  # the rest of the console still needs a sign-in


def test_without_metrics_there_is_no_route(tmp_path: Path, approvers: Path) -> None:
    app = create_app(db=tmp_path / "proctor.db", approvers=approvers, secret="s", metrics=False)
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/metrics").status_code == 404


def test_serve_passes_no_metrics_on(tmp_path: Path, approvers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app))
    arguments = ["serve", "--db", str(tmp_path / "p.db"), "--approvers", str(approvers)]
    assert CliRunner().invoke(cli, arguments).exit_code == 0
    assert "/metrics" in {getattr(route, "path", None) for route in served["app"].routes}
    assert CliRunner().invoke(cli, [*arguments, "--no-metrics"]).exit_code == 0
    assert "/metrics" not in {getattr(route, "path", None) for route in served["app"].routes}
