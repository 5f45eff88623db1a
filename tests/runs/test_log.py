"""The run log on a real SQLite file: round trips, exact snapshots, redaction, failures, crashes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctor import ConfigurationError, StoreError
from proctor.pii import PIIDetector
from proctor.runs import REPR_MARKER, RunLog, encode
from proctor.runs.log import NO_RESULT, decode
from tests.databases import ALL_DATABASES


@pytest.fixture(params=list(ALL_DATABASES))
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLog]:
    run_log = RunLog(ALL_DATABASES[request.param](tmp_path), pii=False)
    yield run_log
    run_log.close()


def start(log: RunLog, run_id: str, *, service: str = "svc", agent: str = "bot", **fields: Any) -> None:
    """``run_started`` with defaults for what a test does not care about."""
    values: dict[str, Any] = {"tool": "handle", "function": "app:handle", "started": 1.0, "input": None}
    values.update(fields)
    log.run_started(run_id, service=service, agent=agent, **values)


def act(log: RunLog, run_id: str, seq: int, **fields: Any) -> None:
    """``action`` with defaults for what a test does not care about."""
    values: dict[str, Any] = {
        "tool": "t",
        "service": "svc",
        "agent": "bot",
        "started": 1.0,
        "duration": 0.0,
        "status": "succeeded",
        "args": {},
    }
    values.update(fields)
    log.action(run_id, seq, **values)


class Blocked:
    """Holds the writer of every RunLog before its next commit until ``release()``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        original = RunLog._commit

        def held_commit(run_log: RunLog, sink: Any, records: list[Any]) -> bool:
            self.gate.wait(10)
            return original(run_log, sink, records)

        monkeypatch.setattr(RunLog, "_commit", held_commit)

    def release(self) -> None:
        self.gate.set()


def test_a_run_and_its_actions_round_trip(log: RunLog) -> None:
    start(log, "r1", tool="handle", function="app:handle", started=10.0, input={"question": "hi"})
    act(
        log,
        "r1",
        1,
        tool="search",
        started=11.0,
        duration=0.5,
        args={"q": "hi"},
        requested_args={"q": "hi", "limit": 50},
        result=["a"],
        labels={"team": "x"},
        estimated_cost=0.2,
        actual_cost=0.15,
        approval={"rule": "ask", "approved": True, "approver": "ann", "comment": None},
    )
    act(
        log,
        "r1",
        2,
        tool="llm",
        started=12.0,
        duration=None,
        status="denied",
        args={},
        error=ValueError("boom"),
        decisions=[{"phase": "before", "rule": "x", "action": "deny", "decided": True}],
    )
    log.run_finished(
        "r1",
        status="failed",
        ended=13.0,
        error=ValueError("boom"),
        estimated_cost=1.0,
        actual_cost=0.0,
        cost=0.15,
        effects={"seed": 7, "now": [12.5], "uuid": []},
    )
    assert log.flush(timeout=10)
    [run] = log.runs()
    assert (run.run_id, run.service, run.agent, run.tool, run.function, run.status) == (
        "r1",
        "svc",
        "bot",
        "handle",
        "app:handle",
        "failed",
    )
    assert (run.started, run.ended, run.estimated_cost, run.actual_cost, run.cost) == (
        10.0,
        13.0,
        1.0,
        0.0,
        0.15,
    )
    assert decode(run.input) == {"question": "hi"}
    assert run.output is None  # it raised: no output
    assert decode(run.error) == {"type": "builtins:ValueError", "message": "boom", "args": ["boom"]}
    assert decode(run.decisions) == []
    assert decode(run.effects) == {"seed": 7, "now": [12.5], "uuid": []}
    assert not run.redacted
    assert log.run("r1") == run
    assert log.run("nope") is None
    first, second = log.actions("r1")
    assert (first.seq, first.tool, first.started, first.duration, first.status) == (
        1,
        "search",
        11.0,
        0.5,
        "succeeded",
    )
    assert (decode(first.args), decode(first.requested_args), decode(first.result)) == (
        {"q": "hi"},
        {"q": "hi", "limit": 50},
        ["a"],
    )
    assert (decode(first.labels), first.estimated_cost, first.actual_cost, first.error) == (
        {"team": "x"},
        0.2,
        0.15,
        None,
    )
    assert decode(first.approval) == {"rule": "ask", "approved": True, "approver": "ann", "comment": None}
    assert (second.status, second.duration, second.result, second.requested_args) == (
        "denied",
        None,
        None,
        None,
    )
    assert decode(second.error) == {"type": "builtins:ValueError", "message": "boom", "args": ["boom"]}
    assert decode(second.decisions) == [{"phase": "before", "rule": "x", "action": "deny", "decided": True}]


def test_a_run_still_running_has_no_end(log: RunLog) -> None:
    start(log, "r", started=5.0)
    log.flush()
    [run] = log.runs()
    assert (run.status, run.ended, run.output, run.error, run.cost) == ("running", None, None, None, 0.0)


def test_the_error_type_is_the_import_path_of_its_class(log: RunLog) -> None:
    class LocalError(Exception):
        pass

    start(log, "r")
    log.run_finished("r", status="failed", ended=2.0, error=LocalError("x", 3))
    log.flush()
    error = decode(log.runs()[0].error)
    assert error == {
        "type": f"{__name__}:test_the_error_type_is_the_import_path_of_its_class.<locals>.LocalError",
        "message": "('x', 3)",
        "args": ["x", 3],
    }


def test_no_result_is_null_and_a_none_result_is_json_null(log: RunLog) -> None:
    start(log, "r")
    act(log, "r", 1, result=None)
    act(log, "r", 2)  # result not given: NO_RESULT
    act(log, "r", 3, result=NO_RESULT, error=KeyError("k"))
    log.run_finished("r", status="succeeded", ended=2.0, output=None)
    start(log, "s")
    log.run_finished("s", status="failed", ended=2.0, output=NO_RESULT)
    log.flush()
    assert [action.result for action in log.actions("r")] == ["null", None, None]
    run_r, run_s = log.run("r"), log.run("s")
    assert run_r is not None
    assert run_s is not None
    assert run_r.output == "null"
    assert decode(run_r.output) is None
    assert run_s.output is None


def test_an_unknown_status_is_refused_by_the_caller(log: RunLog) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        log.run_finished("r", status="exploded", ended=1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_full": "wait"}, "on_full must be 'block' or 'drop'"),
        ({"queue_size": 0}, "queue_size and batch must be >= 1"),
        ({"batch": 0}, "queue_size and batch must be >= 1"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RunLog(tmp_path / "runs.db", **options)


def test_filters_and_prune(log: RunLog) -> None:
    rows = [
        ("a", "bot", "succeeded"),
        ("a", "bot", "failed"),
        ("b", "bot", "succeeded"),
        ("a", "eve", "denied"),
    ]
    for index, (service, agent, status) in enumerate(rows):
        start(log, f"r{index}", service=service, agent=agent, started=100.0 + index)
        log.run_finished(f"r{index}", status=status, ended=100.5 + index)
    log.flush()
    assert [r.run_id for r in log.runs()] == ["r3", "r2", "r1", "r0"]  # newest first
    assert [r.run_id for r in log.runs(oldest_first=True)] == ["r0", "r1", "r2", "r3"]
    assert [r.run_id for r in log.runs(service="a")] == ["r3", "r1", "r0"]
    assert [r.run_id for r in log.runs(service="a", agent="bot")] == ["r1", "r0"]
    assert [r.run_id for r in log.runs(status="succeeded", service="b")] == ["r2"]
    assert [r.run_id for r in log.runs(since=101.0, until=103.0)] == ["r2", "r1"]  # since <= started < until
    assert [r.run_id for r in log.runs(limit=2)] == ["r3", "r2"]
    assert len(log.runs(limit=None)) == 4
    assert log.runs(since=104.0) == []
    act(log, "r0", 1)
    act(log, "r3", 1)
    assert log.prune(older_than=102.0) == 2  # r0 and r1, and r0's action
    assert [r.run_id for r in log.runs()] == ["r3", "r2"]
    assert log.actions("r0") == []
    assert [a.seq for a in log.actions("r3")] == [1]
    assert log.prune(older_than=0.0) == 0


def test_actions_of_gives_runs_in_the_order_asked_each_in_seq_order(log: RunLog) -> None:
    for run_id in ("a", "b", "c"):
        start(log, run_id)
    for run_id, seq in [("b", 3), ("a", 2), ("b", 1), ("c", 1), ("a", 1), ("b", 2)]:  # recorded out of order
        act(log, run_id, seq, tool=f"{run_id}{seq}")
    log.flush()
    assert [a.tool for a in log.actions_of(["b", "missing", "a"])] == ["b1", "b2", "b3", "a1", "a2"]
    assert [a.tool for a in log.actions_of(["c", "a"])] == ["c1", "a1", "a2"]
    assert list(log.actions_of([])) == []
    assert [a.seq for a in log.actions("b")] == [1, 2, 3]


def test_actions_of_many_runs_keeps_the_order_across_query_chunks(log: RunLog) -> None:
    ids = [f"r{index:04d}" for index in range(1200)]
    for run_id in ids:
        start(log, run_id)
        act(log, run_id, 2, tool=f"{run_id}/2")
        act(log, run_id, 1, tool=f"{run_id}/1")
    log.flush()
    wanted = list(reversed(ids))
    assert [a.tool for a in log.actions_of(wanted)] == [f"{i}/{n}" for i in wanted for n in (1, 2)]


def test_spent_sums_actions_by_start_and_run_calls_by_end(log: RunLog) -> None:
    start(log, "r1", started=100.0)
    act(log, "r1", 1, started=100.0, actual_cost=1.0)
    act(log, "r1", 2, started=150.0, actual_cost=2.0)
    act(log, "r1", 3, started=200.0, actual_cost=4.0)  # at until: not in [100, 200)
    act(log, "r1", 4, started=120.0, actual_cost=None)  # never ran: counts nothing
    act(log, "r1", 5, started=120.0, actual_cost=8.0, agent="other")
    act(log, "r1", 6, started=120.0, actual_cost=16.0, service="other")
    log.run_finished("r1", status="succeeded", ended=199.0, actual_cost=32.0, cost=39.0)
    start(log, "r2", started=50.0)
    log.run_finished("r2", status="succeeded", ended=99.0, actual_cost=64.0, cost=64.0)  # ended before since
    start(log, "r3", started=150.0)  # still running: no end, its own call counts nothing yet
    log.flush()
    # actions 1 and 2 (1 + 2) plus r1's own call, which ended in the span (32)
    assert log.spent("svc", "bot", 100.0, 200.0) == 35.0
    assert log.spent("svc", "bot", 0.0, 100.0) == 64.0  # r2's own call
    assert log.spent("svc", "other", 0.0, 1000.0) == 8.0
    assert log.spent("other", "bot", 0.0, 1000.0) == 16.0
    assert log.spent("nobody", "bot", 0.0, 1000.0) == 0.0


def test_the_record_is_what_was_passed_even_if_the_caller_changes_it_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = Blocked(monkeypatch)  # the writer encodes only after the caller has changed everything
    run_log = RunLog(tmp_path / "runs.db", pii=False)
    try:
        args: dict[str, Any] = {"items": [1, 2], "options": {"mode": "fast"}}
        result: dict[str, Any] = {"rows": [{"id": 1}]}
        flat: dict[str, Any] = {"a": 1, "b": "x"}
        start(run_log, "r", input=args, labels=flat)
        act(run_log, "r", 1, args=args, requested_args=flat, result=result)
        log_output = [args]
        run_log.run_finished("r", status="succeeded", ended=2.0, output=log_output)
        args["items"].append(3)
        args["options"]["mode"] = "slow"
        result["rows"][0]["id"] = 99
        flat["a"] = 2
        log_output.clear()
        blocked.release()
        run_log.flush()
        [action] = run_log.actions("r")
        assert decode(action.args) == {"items": [1, 2], "options": {"mode": "fast"}}
        assert decode(action.requested_args) == {"a": 1, "b": "x"}
        assert decode(action.result) == {"rows": [{"id": 1}]}
        [run] = run_log.runs()
        assert decode(run.input) == {"items": [1, 2], "options": {"mode": "fast"}}
        assert decode(run.labels) == {"a": 1, "b": "x"}
        assert decode(run.output) == [{"items": [1, 2], "options": {"mode": "fast"}}]
    finally:
        blocked.release()
        run_log.close()


def test_decisions_approval_and_effects_are_snapshots_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = Blocked(monkeypatch)
    run_log = RunLog(tmp_path / "runs.db", pii=False)
    try:
        decisions = [{"phase": "before", "rule": "a", "action": "log", "decided": True}]
        approval = {"rule": "a", "approved": True, "approver": "ann", "comment": None}
        effects: dict[str, Any] = {"now": [1.0]}
        start(run_log, "r")
        act(run_log, "r", 1, decisions=decisions, approval=approval)
        run_log.run_finished("r", status="succeeded", ended=2.0, effects=effects)
        decisions[0]["action"] = "deny"
        approval["approver"] = "mallory"
        effects["now"].append(2.0)
        blocked.release()
        run_log.flush()
        [action] = run_log.actions("r")
        assert decode(action.decisions)[0]["action"] == "log"
        assert decode(action.approval)["approver"] == "ann"
        assert decode(run_log.runs()[0].effects) == {"now": [1.0]}
    finally:
        blocked.release()
        run_log.close()


def test_values_json_cannot_hold_are_kept_as_marked_reprs(log: RunLog) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    value = {"o": Opaque(), "nan": float("nan"), "b": b"\x00", "s": {2, 1}, "x": Broken(), "t": (1, "a")}
    decoded = json.loads(encode(value))
    assert decoded["o"] == {REPR_MARKER: "<Opaque 7>"}
    assert decoded["nan"] == {REPR_MARKER: "nan"}
    assert decoded["b"] == {"__proctor_bytes__": "AA=="}
    assert decoded["s"] == [1, 2]
    assert decoded["x"] == {REPR_MARKER: "<Broken whose repr raised RuntimeError>"}
    assert decoded["t"] == [1, "a"]
    cycle: list[Any] = []
    cycle.append(cycle)
    assert REPR_MARKER in encode(cycle)  # depth-limited, never recursion errors
    # the same values through the log
    start(log, "r")
    act(log, "r", 1, args=value, result=float("inf"))
    log.flush()
    [action] = log.actions("r")
    assert decode(action.args) == decoded
    assert decode(action.result) == {REPR_MARKER: "inf"}


def test_pii_is_redacted_in_the_stored_record_by_default(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path / "runs.db")
    try:
        start(run_log, "r", input={"to": "jane@example.com"})
        act(run_log, "r", 1, tool="mail", args={"body": "hi"})
        act(run_log, "r", 2, tool="mail", args={"body": "hi"}, result={"sent_to": "bob@example.org"})
        act(run_log, "r", 3, tool="mail", args={"to": "bob@example.org"})  # no result
        run_log.run_finished("r", status="succeeded", ended=2.0, output="done")
        run_log.flush()
        [run] = run_log.runs()
        assert decode(run.input) == {"to": "[REDACTED:email]"}
        assert run.redacted  # found at the start, kept when the end adds nothing
        first, second, third = run_log.actions("r")
        assert not first.redacted
        assert decode(second.result) == {"sent_to": "[REDACTED:email]"}
        assert second.redacted
        assert (decode(third.args), third.result, third.redacted) == ({"to": "[REDACTED:email]"}, None, True)
        assert "example" not in (tmp_path / "runs.db").read_bytes().decode("latin-1")
    finally:
        run_log.close()


@dataclasses.dataclass
class Mail:
    to: str


def test_values_with_nothing_to_redact_are_stored_as_without_redaction(tmp_path: Path) -> None:
    values: list[Any] = [
        None,
        {"customer": "cust-1001", "options": {"region": "eu", "days": 30}, "limit": 20},
        ("a", 1, [2.5, None, True]),
        {1: "x", "nested": [[["deep"]]]},
        float("nan"),
        b"bytes",
        Mail("nobody"),
        "x" * 30,
        {"at": 1733600000.123},
    ]
    plain = RunLog(tmp_path / "plain.db", pii=False)
    redacting = RunLog(tmp_path / "redacting.db")
    try:
        for run_log in (plain, redacting):
            for seq, value in enumerate(values, 1):
                act(run_log, "r", seq, args=value, result=value)
                act(run_log, "r", 100 + seq, args=value)  # no result
            run_log.flush()
        for kept, checked in zip(plain.actions("r"), redacting.actions("r"), strict=True):
            assert (checked.args, checked.result, checked.redacted) == (kept.args, kept.result, False)
    finally:
        plain.close()
        redacting.close()


def test_pii_in_the_output_alone_marks_the_run_redacted(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path / "runs.db")
    try:
        start(run_log, "r", input={"q": "hello"})
        run_log.run_finished("r", status="succeeded", ended=2.0, output="mail jane@example.com")
        run_log.flush()
        [run] = run_log.runs()
        assert (decode(run.input), decode(run.output), run.redacted) == (
            {"q": "hello"},
            "mail [REDACTED:email]",
            True,
        )
    finally:
        run_log.close()


def test_pii_false_keeps_values_and_a_detector_redacts_its_own_kinds(tmp_path: Path) -> None:
    value = {"to": "jane@example.com", "ip": "10.1.2.3"}
    plain = RunLog(tmp_path / "plain.db", pii=False)
    only_ips = RunLog(tmp_path / "ips.db", pii=PIIDetector(kinds=["ip_address"]))
    try:
        for run_log in (plain, only_ips):
            start(run_log, "r", input=value)
            run_log.flush()
        [kept] = plain.runs()
        assert (decode(kept.input), kept.redacted) == (value, False)
        [partly] = only_ips.runs()
        assert decode(partly.input) == {"to": "jane@example.com", "ip": "[REDACTED:ip_address]"}
        assert partly.redacted
    finally:
        plain.close()
        only_ips.close()


def test_drop_mode_counts_what_it_drops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = Blocked(monkeypatch)
    run_log = RunLog(tmp_path / "runs.db", queue_size=2, batch=1, on_full="drop", pii=False)
    try:
        for index in range(10):
            start(run_log, f"r{index}")
        # the queue keeps two; the held writer took one out of it, or had not yet
        assert run_log.dropped in (7, 8)
        blocked.release()
        assert run_log.flush(timeout=10)
        assert len(run_log.runs()) == 10 - run_log.dropped
        assert run_log.failed == 0
    finally:
        blocked.release()
        run_log.close()


def test_block_mode_loses_nothing_with_a_tiny_queue(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path / "runs.db", queue_size=1, batch=1, pii=False)
    try:
        start(run_log, "r")
        for seq in range(1, 101):
            act(run_log, "r", seq)
        assert run_log.flush(timeout=30)
        assert [a.seq for a in run_log.actions("r")] == list(range(1, 101))
        assert (run_log.dropped, run_log.failed) == (0, 0)
    finally:
        run_log.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    RunLog(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer than this proctor"):
        RunLog(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"cannot open the run log .*: file is not a database"):
        RunLog(path)


def test_a_closed_log_drops_and_counts_records(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_log = RunLog(path, pii=False)
    start(run_log, "kept")
    run_log.close()
    start(run_log, "late")  # no exception for the caller
    act(run_log, "late", 1)
    run_log.run_finished("late", status="succeeded", ended=2.0)
    assert run_log.dropped == 3
    assert run_log.flush(timeout=1)  # nothing left to wait for
    run_log.close()  # closing twice is harmless
    assert [r.run_id for r in run_log.runs()] == ["kept"]  # still readable
    reopened = RunLog(path)
    try:
        assert [r.run_id for r in reopened.runs()] == ["kept"]
        assert reopened.dropped == 0
    finally:
        reopened.close()


def test_a_database_error_in_the_writer_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_log = RunLog(path, pii=False)
    try:
        start(run_log, "r")
        assert run_log.flush(timeout=10)
        with sqlite3.connect(path) as other:  # another connection breaks the schema under the writer
            other.execute("DROP TABLE actions")
        act(run_log, "r", 1)  # the caller is not told
        act(run_log, "r", 2)
        assert run_log.flush(timeout=10)
        assert run_log.failed == 2
        assert run_log.dropped == 0
        # the writer is still alive: later records that the database takes are committed
        run_log.run_finished("r", status="succeeded", ended=3.0, cost=1.5)
        assert run_log.flush(timeout=10)
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT status, cost FROM runs WHERE run_id = 'r'").fetchall() == [
                ("succeeded", 1.5)
            ]
        assert run_log.failed == 2
        with pytest.raises(StoreError, match=r"reading the run log .* failed: no such table: actions"):
            run_log.actions("r")
    finally:
        run_log.close()


def test_sigkill_keeps_every_acknowledged_action(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from proctor.runs import RunLog
        log = RunLog({str(path)!r}, pii=False)
        fields = dict(tool="t", service="s", agent="a", started=0.0, duration=0.0, status="succeeded")
        log.run_started("r", service="s", agent="a", tool="f", function="m:f", started=0.0, input=None)
        for seq in range(1, 201):
            log.action("r", seq, args={{"seq": seq}}, **fields)
        log.flush()
        print("acknowledged 200", flush=True)
        seq = 200
        while True:  # keeps writing until killed
            seq += 1
            log.action("r", seq, args={{"seq": seq}}, **fields)
            if seq % 100 == 0:
                time.sleep(0.001)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "acknowledged 200"
        time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    reopened = RunLog(path)
    try:
        actions = reopened.actions("r")
        assert len(actions) >= 200
        assert [a.seq for a in actions[:200]] == list(range(1, 201))
        assert [decode(a.args) for a in actions[:200]] == [{"seq": seq} for seq in range(1, 201)]
        assert [a.seq for a in actions] == list(range(1, len(actions) + 1))  # no gaps
        [run] = reopened.runs()
        assert run.status == "running"
    finally:
        reopened.close()


def test_a_record_the_database_refuses_is_lost_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    from decimal import Decimal

    run_log = RunLog(tmp_path / "runs.db", pii=False)
    try:
        for seq in range(1, 5):  # record 3's cost is a Decimal, which sqlite3 cannot bind
            cost: Any = Decimal("1.5") if seq == 3 else 0.1
            run_log.action("r", seq, "t", "s", "a", 1.0, 0.1, "succeeded", {}, estimated_cost=cost)
        run_log.action("r", 5, "t", "s", "a", 1.0, 0.1, "succeeded", {}, actual_cost=10**20)  # too big
        run_log.action("r", 6, "t", "s", "a", 1.0, 0.1, "succeeded", {})
        assert run_log.flush(timeout=10)
        assert [action.seq for action in run_log.actions("r")] == [1, 2, 4, 6]
        assert run_log.failed == 2
    finally:
        run_log.close()
