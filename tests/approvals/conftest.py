"""Fixtures of the durable approval tests: a store on a SQLite file and on PostgreSQL, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor import ApprovalStore
from tests.approvals.helpers import WebhookReceiver
from tests.databases import ALL_DATABASES


@pytest.fixture(params=list(ALL_DATABASES))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the queue is kept: every test here runs on each database of ``ALL_DATABASES``."""
    return ALL_DATABASES[request.param](tmp_path)


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
