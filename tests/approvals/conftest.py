"""Fixtures of the durable approval tests: a store on a SQLite file and on PostgreSQL, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctor import ApprovalStore
from tests import postgres_server
from tests.approvals.helpers import WebhookReceiver


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where the queue is kept: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "postgresql":
        return postgres_server.shared().new_database()
    return tmp_path / "proctor.db"


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A SQLite file, for what only SQLite has (its schema's history, a ``sqlite:///`` URL)."""
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
