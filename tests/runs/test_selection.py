"""Choosing recorded runs: ages, date ranges, filters, and runs picked from a real run log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from proctor.errors import ConfigurationError
from proctor.runs.log import RunLog, RunRecord
from proctor.runs.selection import parse_age, parse_date_range, parse_filters, select_runs
from tests.databases import ALL_DATABASES

JAN_1 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
DAY = 86_400.0


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is Asia/Tokyo (UTC+9, no daylight saving time)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45.0),
        ("90m", 5_400.0),
        ("12h", 43_200.0),
        ("1.5h", 5_400.0),
        ("30d", 2_592_000.0),
        ("2w", 1_209_600.0),
        (" 7d ", 604_800.0),
    ],
)
def test_ages(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


BAD_AGES = ["", "30", "d", "-1d", "0d", "3x", "1.5.2h", "1 d", "d30", "1e3s", "\u0663d", "9" * 400 + "d"]


@pytest.mark.parametrize("text", BAD_AGES)
def test_bad_ages_show_valid_ones(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r'not an age: .*"30d"'):
        parse_age(text)


def test_a_date_range_includes_both_days() -> None:
    # 2024-01-01 00:00 UTC to 2024-01-08 00:00 UTC: seven days later.
    assert parse_date_range("2024-01-01:2024-01-07", UTC) == (JAN_1, JAN_1 + 7 * DAY)
    assert parse_date_range("2024-01-01..2024-01-07", UTC) == (JAN_1, JAN_1 + 7 * DAY)
    assert parse_date_range("2024-01-01:2024-01-01", UTC) == (JAN_1, JAN_1 + DAY)


def test_a_date_range_in_a_time_zone() -> None:
    # Midnight in Paris (UTC+1 in January) is 23:00 UTC the day before.
    paris = ZoneInfo("Europe/Paris")
    assert parse_date_range("2024-01-01:2024-01-01", paris) == (JAN_1 - 3_600, JAN_1 + DAY - 3_600)


def test_a_date_range_is_local_by_default(tokyo: None) -> None:
    # Midnight in Tokyo (UTC+9) is 15:00 UTC the day before.
    assert parse_date_range("2024-01-01:2024-01-02") == (JAN_1 - 9 * 3_600, JAN_1 + 2 * DAY - 9 * 3_600)


def test_datetimes_are_exact_bounds() -> None:
    # 08:00 and 18:30 UTC: 28,800 and 66,600 seconds after midnight.
    assert parse_date_range("2024-01-01T08:00..2024-01-01T18:30", UTC) == (JAN_1 + 28_800, JAN_1 + 66_600)
    # 08:00 at UTC+01:00 is 07:00 UTC, whatever tz says; a date end still takes the whole day.
    assert parse_date_range("2024-01-01T08:00+01:00..2024-01-01", ZoneInfo("Asia/Tokyo")) == (
        JAN_1 + 25_200,
        JAN_1 + DAY - 9 * 3_600,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("yesterday", "not a date range"),
        ("2024-01-01", "not a date range"),
        ("2024-13-01:2024-12-01", "not a date range"),
        ("2024-01-01T10:00:2024-01-02", "not a date range"),
        ("2024-01-01..", "'' is not a date or a datetime"),
        ("2024-01-01..noon", "'noon' is not a date or a datetime"),
        ("2024-01-07:2024-01-01", "ends before it begins"),
        ("2024-01-01T10:00..2024-01-01T09:59", "ends before it begins"),
        ("2024-01-01T10:00..2024-01-01T10:00", "is empty: it ends where it begins"),
    ],
)
def test_bad_date_ranges(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as info:
        parse_date_range(text, UTC)
    if problem.startswith(("not", "'")):
        assert "2024-01-01:2024-01-07" in str(info.value)


def test_filters() -> None:
    assert parse_filters(["status=failed", " service = billing ", "tool=handle", "agent=a=b"]) == {
        "status": "failed",
        "service": "billing",
        "tool": "handle",
        "agent": "a=b",
    }
    assert parse_filters([]) == {}


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (["color=red"], "unknown filter 'color'; filters are: service, agent, status, tool"),
        (["status=weird"], "unknown status 'weird'; statuses are: running, succeeded"),
        (["status"], "not a filter: 'status'; use key=value"),
        (["=failed"], "not a filter"),
        (["status="], "not a filter"),
        (["agent=a", "agent=b"], "filter 'agent' is given twice"),
    ],
)
def test_bad_filters(items: list[str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_filters(items)


@pytest.fixture(params=list(ALL_DATABASES))
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLog]:
    """Six runs, one a day from 2024-01-01 12:00 UTC, and one more at 12:00 on 2024-01-02."""
    run_log = RunLog(ALL_DATABASES[request.param](tmp_path), pii=False)
    specs = [
        ("d1", 0, "billing", "alice", "handle", "succeeded"),
        ("d2", 1, "billing", "bob", "refund", "failed"),
        ("d2b", 1, "support", "alice", "handle", "succeeded"),
        ("d3", 2, "billing", "alice", "handle", "failed"),
        ("d4", 3, "support", "bob", "handle", "denied"),
        ("d5", 4, "billing", "alice", "refund", "failed"),
        ("d6", 5, "billing", "alice", "handle", "running"),
    ]
    # Recorded newest first, so that the order of the rows says nothing.
    for run_id, day, service, agent, tool, status in reversed(specs):
        started = JAN_1 + day * DAY + 12 * 3_600
        run_log.run_started(
            run_id, service=service, agent=agent, tool=tool, function=f"app.{tool}", started=started, input={}
        )
        if status != "running":
            run_log.run_finished(run_id, status=status, ended=started + 60)
    assert run_log.flush(timeout=10)
    yield run_log
    run_log.close()


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


def test_all_runs_oldest_first(log: RunLog) -> None:
    assert ids(select_runs(log)) == ["d1", "d2", "d2b", "d3", "d4", "d5", "d6"]


def test_by_time(log: RunLog) -> None:
    jan_3 = JAN_1 + 2 * DAY
    assert ids(select_runs(log, since=jan_3)) == ["d3", "d4", "d5", "d6"]
    assert ids(select_runs(log, until=jan_3)) == ["d1", "d2", "d2b"]
    assert ids(select_runs(log, since=JAN_1 + DAY, until=jan_3)) == ["d2", "d2b"]


def test_by_date_range_in_local_time(log: RunLog, tokyo: None) -> None:
    # Runs start at 12:00 UTC, 21:00 in Tokyo: 2024-01-02 Tokyo holds d2 and d2b, 2024-01-04 d4.
    assert ids(select_runs(log, date_range="2024-01-02:2024-01-02")) == ["d2", "d2b"]
    assert ids(select_runs(log, date_range="2024-01-02..2024-01-04")) == ["d2", "d2b", "d3", "d4"]
    # since and a date range: runs in both.
    assert ids(select_runs(log, date_range="2024-01-02..2024-01-04", since=JAN_1 + 2 * DAY)) == ["d3", "d4"]


def test_by_filters(log: RunLog) -> None:
    assert ids(select_runs(log, filters={"status": "failed"})) == ["d2", "d3", "d5"]
    assert ids(select_runs(log, filters={"service": "billing", "agent": "alice"})) == ["d1", "d3", "d5", "d6"]
    assert ids(select_runs(log, filters={"tool": "refund"})) == ["d2", "d5"]
    assert ids(select_runs(log, filters={"tool": "handle", "agent": "alice", "status": "failed"})) == ["d3"]
    assert ids(select_runs(log, filters={"status": "running"})) == ["d6"]
    assert select_runs(log, filters={"service": "nobody"}) == []


def test_limit_keeps_the_most_recent_runs(log: RunLog) -> None:
    assert ids(select_runs(log, limit=3)) == ["d4", "d5", "d6"]
    assert ids(select_runs(log, filters={"tool": "handle"}, limit=2)) == ["d4", "d6"]
    with pytest.raises(ConfigurationError, match="limit must be at least 1"):
        select_runs(log, limit=0)


def test_one_run_by_id(log: RunLog) -> None:
    assert ids(select_runs(log, run_id="d3")) == ["d3"]
    assert select_runs(log, run_id="d3", filters={"status": "succeeded"}) == []
    assert select_runs(log, run_id="d3", until=JAN_1) == []
    with pytest.raises(ConfigurationError) as info:
        select_runs(log, run_id="nope")
    assert str(info.value) == f"no run 'nope' in {log.database}; `proctor runs list` shows recorded runs"


def test_unknown_filter_keys_name_the_valid_ones(log: RunLog) -> None:
    with pytest.raises(
        ConfigurationError, match="unknown filter 'color'; filters are: service, agent, status, tool"
    ):
        select_runs(log, filters={"color": "red"})
    with pytest.raises(ConfigurationError, match="unknown status"):
        select_runs(log, filters={"status": "done"})
