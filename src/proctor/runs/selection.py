"""Choosing recorded runs: by id, age, date range and filters, as the command line spells them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo

from proctor.errors import ConfigurationError
from proctor.runs.log import RUN_STATUSES, RunLog, RunRecord

__all__ = ["FILTER_KEYS", "parse_age", "parse_date_range", "parse_filters", "select_runs"]

FILTER_KEYS = ("service", "agent", "status", "tool")
"""What runs can be filtered on; ``tool`` is the run's top-level tool."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
_AGE_EXAMPLES = '"45s", "90m", "12h", "1.5h", "30d" or "2w"'
_RANGE_EXAMPLES = '"2024-01-01:2024-01-07", "2024-01-01..2024-01-07" or "2024-01-01T08:00..2024-01-01T18:00"'


def parse_age(text: str) -> float:
    """Seconds in an age such as ``"30d"``: a number, then s, m, h, d or w; ConfigurationError otherwise."""
    match = _AGE.fullmatch(text.strip())
    seconds = float(match[1]) * _UNITS[match[2]] if match else 0.0
    if not 0 < seconds < math.inf:
        raise ConfigurationError(
            f"not an age: {text!r}; use a number above zero and a unit, like {_AGE_EXAMPLES}"
        )
    return seconds


def parse_date_range(text: str, tz: tzinfo | None = None) -> tuple[float, float]:
    """``(since, until)`` in Unix seconds from ``"A:B"`` (dates) or ``"A..B"`` (dates or datetimes).

    A date means the whole day: from its midnight, until the midnight after ``B``, so both days
    are included. A datetime is an exact bound. Dates and datetimes without a zone are taken in
    ``tz``, the local time zone when None. ConfigurationError for other text, or ``B`` before ``A``.
    """
    first, separator, last = text.strip().partition("..")
    if not separator:
        first, separator, last = text.strip().partition(":")
        if not (separator and _is_date(first) and _is_date(last)):
            raise ConfigurationError(f"not a date range: {text!r}; use {_RANGE_EXAMPLES}")
    since = _bound(first, tz, end=False, text=text)
    until = _bound(last, tz, end=True, text=text)
    if until < since:
        raise ConfigurationError(f"the date range {text!r} ends before it begins")
    if until == since:
        raise ConfigurationError(f"the date range {text!r} is empty: it ends where it begins")
    return since, until


def parse_filters(items: Iterable[str]) -> dict[str, str]:
    """``key=value`` items (``--filter status=failed``) as a mapping; keys are ``FILTER_KEYS``."""
    filters: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not value:
            raise ConfigurationError(f"not a filter: {item!r}; use key=value, like status=failed")
        if key in filters:
            raise ConfigurationError(f"filter {key!r} is given twice")
        filters[key] = value
    _check_filters(filters)
    return filters


def select_runs(
    log: RunLog,
    *,
    run_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    date_range: str | None = None,
    filters: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> list[RunRecord]:
    """The recorded runs that meet every criterion given, oldest first.

    Parameters:
        run_id: this run only (ConfigurationError when ``log`` has no such run).
        since, until: started at or after ``since`` and before ``until`` (Unix seconds).
        date_range: started within it; see ``parse_date_range`` (local time zone).
        filters: ``service``, ``agent``, ``status`` (one of ``RUN_STATUSES``) and ``tool`` (the
            run's top-level tool) equal to the value given.
        limit: the most recent ``limit`` runs of those, at most.
    """
    wanted = dict(filters or {})
    _check_filters(wanted)
    if limit is not None and limit < 1:
        raise ConfigurationError(f"limit must be at least 1, got {limit}")
    if date_range is not None:
        start, end = parse_date_range(date_range)
        since = start if since is None else max(since, start)
        until = end if until is None else min(until, end)
    tool = wanted.pop("tool", None)
    if run_id is not None:
        run = log.run(run_id)
        if run is None:
            raise ConfigurationError(
                f"no run {run_id!r} in {log.database}; `proctor runs list` shows recorded runs"
            )
        runs = [run]
        if not (
            all(getattr(run, key) == value for key, value in wanted.items())
            and (since is None or run.started >= since)
            and (until is None or run.started < until)
        ):
            runs = []
    else:
        runs = log.runs(
            service=wanted.get("service"),
            agent=wanted.get("agent"),
            status=wanted.get("status"),
            since=since,
            until=until,
            limit=limit if tool is None else None,
        )
    if tool is not None:
        runs = [run for run in runs if run.tool == tool][:limit]
    runs.sort(key=lambda run: (run.started, run.run_id))
    return runs


def _check_filters(filters: Mapping[str, str]) -> None:
    for key, value in filters.items():
        if key not in FILTER_KEYS:
            raise ConfigurationError(f"unknown filter {key!r}; filters are: {', '.join(FILTER_KEYS)}")
        if key == "status" and value not in RUN_STATUSES:
            raise ConfigurationError(f"unknown status {value!r}; statuses are: {', '.join(RUN_STATUSES)}")


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _bound(part: str, tz: tzinfo | None, *, end: bool, text: str) -> float:
    """One end of a date range: a date's midnight (the next one, for the end), or a datetime."""
    part = part.strip()
    try:
        day = date.fromisoformat(part)
    except ValueError:
        pass
    else:
        return datetime.combine(day + timedelta(days=1) if end else day, time(), tz).timestamp()
    try:
        moment = datetime.fromisoformat(part)
    except ValueError:
        raise ConfigurationError(
            f"not a date range: {text!r} ({part!r} is not a date or a datetime); use {_RANGE_EXAMPLES}"
        ) from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)).timestamp()
