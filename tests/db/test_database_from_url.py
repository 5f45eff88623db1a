"""database_from_url: URLs, plain paths, $PROCTOR_DB, and the error for a scheme no backend serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor import ConfigurationError
from proctor.db import DEFAULT_PATH, SQLiteDatabase, database_from_url, known_schemes


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("runs.db", Path("runs.db")),
        (".proctor/runs.db", Path(".proctor/runs.db")),
        ("/var/proctor/runs.db", Path("/var/proctor/runs.db")),
        (Path("/var/proctor/runs.db"), Path("/var/proctor/runs.db")),
        ("sqlite:///runs.db", Path("runs.db")),
        ("sqlite:///.proctor/runs.db", Path(".proctor/runs.db")),
        ("sqlite:////var/proctor/runs.db", Path("/var/proctor/runs.db")),
        ("sqlite:////var/my%20runs/100%25.db", Path("/var/my runs/100%.db")),
    ],
)
def test_a_plain_path_or_a_sqlite_url_is_a_sqlite_file(given: str | Path, path: Path) -> None:
    database = database_from_url(given)
    assert isinstance(database, SQLiteDatabase)
    assert database.path == path
    assert str(database) == str(path)


@pytest.mark.parametrize("path", ["runs.db", "/var/proctor/runs.db", "/var/my runs/100%.db", "a?b#c.db"])
def test_the_url_of_a_database_names_it_again(path: str) -> None:
    database = database_from_url(path)
    again = database_from_url(database.url)
    assert (again.url, again.path) == (database.url, Path(path))


def test_the_url_of_an_absolute_path_has_four_slashes() -> None:
    assert database_from_url("/var/proctor/runs.db").url == "sqlite:////var/proctor/runs.db"
    assert database_from_url("runs.db").url == "sqlite:///runs.db"


def test_without_a_location_proctor_db_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTOR_DB", raising=False)
    assert database_from_url().path == Path(DEFAULT_PATH)
    monkeypatch.setenv("PROCTOR_DB", "/srv/proctor.db")
    assert database_from_url().path == Path("/srv/proctor.db")
    monkeypatch.setenv("PROCTOR_DB", "sqlite:///data/proctor.db")
    assert database_from_url().path == Path("data/proctor.db")


def test_an_unknown_scheme_names_the_known_ones() -> None:
    assert known_schemes() == ["postgres", "postgresql", "sqlite"]
    with pytest.raises(ConfigurationError) as info:
        database_from_url("mysql://db.example.com/proctor")
    assert str(info.value) == (
        "no database backend serves 'mysql://db.example.com/proctor'; known schemes: postgres://, "
        "postgresql://, sqlite:// "
        "(or give a plain path for a SQLite file)"
    )


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/runs.db"])
def test_a_sqlite_url_without_a_path_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"is not a SQLite database URL: write sqlite:///relative"):
        database_from_url(url)


@pytest.mark.parametrize("where", [":memory:", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(where: str) -> None:
    with pytest.raises(ConfigurationError, match="must be a file that several connections share"):
        database_from_url(where)
