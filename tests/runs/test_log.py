"""The run log on a real SQLite file: round trips, exact snapshots, redaction, crashes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from proctor import StoreError
from proctor.pii import PIIDetector
from proctor.runs import REPR_MARKER, RunLog, encode


@pytest.fixture
def log(tmp_path: Path) -> Any:
    run_log = RunLog(tmp_path / "runs.db")
    yield run_log
    run_log.close()


def test_a_run_and_its_actions_round_trip(log: RunLog) -> None:
    log.run_started("r1", "svc", "bot", "handle", {"question": "hi"})
    log.action(
        "r1", 1, "search", started=1.0, duration=0.5, args={"q": "hi"}, result=["a"], estimated_cost=0.2
    )
    log.action(
        "r1",
        2,
        "llm",
        started=2.0,
        duration=0.1,
        args={},
        error=ValueError("boom"),
        decisions=[{"rule": "x"}],
    )
    log.run_finished("r1", "failed", error=ValueError("boom"), cost=0.2)
    assert log.flush(timeout=10)
    [run] = log.runs()
    assert (run.run_id, run.service, run.agent, run.function, run.status, run.cost) == (
        "r1",
        "svc",
        "bot",
        "handle",
        "failed",
        0.2,
    )
    assert json.loads(run.input or "") == {"question": "hi"}
    assert run.error == "ValueError: boom"
    assert run.ended is not None
    assert run.ended >= run.started
    first, second = log.actions("r1")
    assert (first.seq, first.tool, json.loads(first.args or ""), json.loads(first.result or "")) == (
        1,
        "search",
        {"q": "hi"},
        ["a"],
    )
    assert (second.error, json.loads(second.decisions or "")) == ("ValueError: boom", [{"rule": "x"}])


def test_filters_and_prune(log: RunLog) -> None:
    for index, (service, status) in enumerate([("a", "succeeded"), ("a", "failed"), ("b", "succeeded")]):
        log.run_started(f"r{index}", service, "bot", "f", None)
        log.run_finished(f"r{index}", status)
    log.flush()
    assert [r.run_id for r in log.runs(service="a")] == ["r1", "r0"]
    assert [r.run_id for r in log.runs(status="succeeded", service="b")] == ["r2"]
    assert log.runs(since=time.time() + 60) == []
    assert log.prune(older_than=time.time() + 1) == 3
    assert log.runs() == []


def test_the_record_is_what_was_passed_even_if_the_caller_changes_it_later(log: RunLog) -> None:
    args = {"items": [1, 2], "options": {"mode": "fast"}}
    log.run_started("r", "s", "a", "f", args)
    log.action("r", 1, "t", started=0.0, duration=0.0, args=args)
    args["items"].append(3)
    args["options"]["mode"] = "slow"
    log.flush()
    assert json.loads(log.actions("r")[0].args or "") == {"items": [1, 2], "options": {"mode": "fast"}}
    assert json.loads(log.runs()[0].input or "") == {"items": [1, 2], "options": {"mode": "fast"}}


def test_values_json_cannot_hold_are_kept_as_marked_reprs() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    decoded = json.loads(
        encode({"o": Opaque(), "nan": float("nan"), "b": b"\x00", "s": {2, 1}, "x": Broken()})
    )
    assert decoded["o"] == {REPR_MARKER: "<Opaque 7>"}
    assert decoded["nan"] == {REPR_MARKER: "nan"}
    assert decoded["b"] == {"__proctor_bytes__": "AA=="}
    assert decoded["s"] == [1, 2]
    assert decoded["x"] == {REPR_MARKER: "<Broken whose repr raised RuntimeError>"}
    cycle: list[Any] = []
    cycle.append(cycle)
    assert REPR_MARKER in encode(cycle)  # depth-limited, never recursion errors


def test_pii_is_redacted_in_the_stored_record(tmp_path: Path) -> None:
    detector = PIIDetector()

    def redact(value: Any) -> tuple[Any, bool]:
        copy, kinds = detector.redact(value)
        return copy, bool(kinds)

    run_log = RunLog(tmp_path / "runs.db", redact=redact)
    try:
        run_log.run_started("r", "s", "a", "f", {"to": "jane@example.com"})
        run_log.action("r", 1, "mail", started=0.0, duration=0.0, args={"body": "hi"})
        run_log.flush()
        [run] = run_log.runs()
        assert json.loads(run.input or "") == {"to": "[REDACTED:email]"}
        assert run.redacted
        assert not run_log.actions("r")[0].redacted
    finally:
        run_log.close()


def test_drop_mode_counts_what_it_drops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    original = RunLog._commit

    def slow_commit(self: RunLog, connection: sqlite3.Connection, records: list[Any]) -> bool:
        gate.wait(10)
        return original(self, connection, records)

    monkeypatch.setattr(RunLog, "_commit", slow_commit)
    run_log = RunLog(tmp_path / "runs.db", queue_size=2, on_full="drop")
    try:
        for index in range(10):
            run_log.run_started(f"r{index}", "s", "a", "f", None)
        assert run_log.dropped >= 7  # the writer holds one batch, the queue two more
        gate.set()
        run_log.flush()
        assert len(run_log.runs()) == 10 - run_log.dropped
    finally:
        gate.set()
        run_log.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    RunLog(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer than this proctor"):
        RunLog(path)


def test_closed_log_refuses_records(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path / "runs.db")
    run_log.close()
    with pytest.raises(StoreError, match="is closed"):
        run_log.run_started("r", "s", "a", "f", None)


def test_sigkill_keeps_every_acknowledged_action(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from proctor.runs import RunLog
        log = RunLog({str(path)!r})
        log.run_started("r", "s", "a", "f", None)
        for seq in range(1, 201):
            log.action("r", seq, "t", started=0.0, duration=0.0, args={{"seq": seq}})
        log.flush()
        print("acknowledged 200", flush=True)
        seq = 200
        while True:  # keeps writing until killed
            seq += 1
            log.action("r", seq, "t", started=0.0, duration=0.0, args={{"seq": seq}})
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
        assert [a.seq for a in actions] == list(range(1, len(actions) + 1))  # no gaps
    finally:
        reopened.close()
