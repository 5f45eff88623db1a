"""Fixtures of the durable approval tests: a store on a real SQLite file, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor import ApprovalStore
from tests.approvals.helpers import WebhookReceiver


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "proctor.db"


@pytest.fixture
def store(db: Path) -> Iterator[ApprovalStore]:
    with ApprovalStore(db) as opened:
        yield opened


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()
