"""The run log's writer process: what it writes, what survives a kill of either side, when it starts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proctor import RunLog
from proctor.runs import log as log_module

REPO = Path(__file__).resolve().parents[2]


def act(log: RunLog, run_id: str, seq: int, args: object) -> None:
    log.action(run_id, seq, "t", "svc", "bot", 1.0, 0.01, "succeeded", args, result={"ok": seq})


def wait_for_writer_process(log: RunLog, run_id: str = "warm-up") -> int:
    """Record and flush until the log's writer process writes; its pid."""
    deadline = time.monotonic() + 60
    seq = 0
    while log.writer_pid is None:
        assert time.monotonic() < deadline, "the writer process never became ready"
        seq += 1
        act(log, run_id, seq, {})
        assert log.flush(30)
        time.sleep(0.01)
    return log.writer_pid


def gone(pid: int, within: float = 60.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def stored_actions(db: Path, run_id: str) -> int:
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM actions WHERE run_id = ?", (run_id,)).fetchone()
    return int(count)


def test_a_writer_process_writes_what_the_thread_would(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", writer="process") as log:
        pid = wait_for_writer_process(log)
        log.run_started(
            "r1",
            service="svc",
            agent="bot",
            tool="t",
            function="f",
            started=1.0,
            input={"to": "ann@example.com"},
        )
        for seq in range(1, 501):
            act(log, "r1", seq, {"n": seq, "note": "write to bob@example.org" if seq == 7 else "plain"})
        log.run_finished("r1", status="succeeded", ended=2.0, output="done", cost=0.5)
        assert log.flush(30)
        assert log.writer_pid == pid
        run = log.run("r1")
        assert run is not None
        assert run.status == "succeeded"
        assert "ann@example.com" not in run.input
        assert run.redacted
        actions = log.actions("r1")
        assert [action.seq for action in actions] == list(range(1, 501))
        assert "bob@example.org" not in actions[6].args
        assert actions[7].args == '{"n":8,"note":"plain"}'
        assert log.failed == 0
    assert gone(pid)  # close() ends it


@pytest.mark.parametrize("pii", [True, False])
def test_a_process_stores_the_same_rows_as_the_thread(tmp_path: Path, pii: bool) -> None:
    """With ``pii=False`` the thread encodes and the process only writes; with it, the process does all."""
    stored = []
    for writer in ("thread", "process"):
        with RunLog(tmp_path / f"{writer}.db", writer=writer, pii=pii) as log:  # type: ignore[arg-type]
            if writer == "process":
                wait_for_writer_process(log)
            log.run_started("r", service="s", agent="a", tool="t", function="f", started=1.0, input=[1])
            for seq in range(1, 101):
                act(log, "r", seq, {"n": seq, "mail": "x@example.com" if seq % 10 == 0 else None})
            log.action("r", 101, "t", "s", "a", 2.0, None, "denied", {}, error=ValueError("no"), labels=["x"])
            log.run_finished("r", status="failed", ended=3.0, error=RuntimeError("boom"), cost=0.25)
            assert log.flush(30)
            stored.append((log.run("r"), log.actions("r")))
    assert stored[0] == stored[1]
    assert stored[0][0] is not None
    assert stored[0][0].redacted is False  # the input held nothing to redact
    assert any(action.redacted for action in stored[0][1]) is pii


def test_a_thread_log_never_starts_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "_BUSY_SHARE", 0.0)
    monkeypatch.setattr(log_module, "_BUSY_WINDOW", 0.0)
    with RunLog(tmp_path / "runs.db", writer="thread") as log:
        for seq in range(1, 201):
            act(log, "r", seq, {})
            if seq % 20 == 0:
                assert log.flush(30)
        assert log.writer_pid is None
        assert len(log.actions("r")) == 200


@pytest.mark.skipif(log_module._cpus() < 2, reason="an auto log starts a process only with 2 CPUs or more")
def test_an_auto_log_moves_to_a_process_when_its_thread_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "_BUSY_SHARE", 0.0)  # any work counts as busy
    monkeypatch.setattr(log_module, "_BUSY_WINDOW", 0.0)
    with RunLog(tmp_path / "runs.db") as log:
        wait_for_writer_process(log)
        for seq in range(1, 101):
            act(log, "after", seq, {"n": seq})
        assert log.flush(30)
        assert len(log.actions("after")) == 100
        assert log.failed == 0


def test_a_killed_writer_process_hands_back_to_the_thread_and_counts_what_it_lost(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", writer="process") as log:
        pid = wait_for_writer_process(log)
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        for seq in range(1, 101):
            act(log, "during", seq, {})
        assert log.flush(30)
        assert log.writer_pid is None
        lost = log.failed
        assert len(log.actions("during")) + lost == 100
        for seq in range(1, 101):
            act(log, "after", seq, {})
        assert log.flush(30)
        assert len(log.actions("after")) == 100  # the thread writes now
        assert log.failed == lost


KILLED = textwrap.dedent(
    """
    import os, signal, sys, time
    from proctor import RunLog

    log = RunLog(sys.argv[1], writer="process")
    seq = 0
    while log.writer_pid is None:
        seq += 1
        log.action("warm-up", seq, "t", "svc", "bot", 1.0, 0.0, "succeeded", {})
        log.flush(30)
        time.sleep(0.01)
    print(log.writer_pid, flush=True)
    sys.stdin.readline()  # the test holds the database's write lock now
    for seq in range(1, 2001):
        log.action("killed", seq, "t", "svc", "bot", 1.0, 0.0, "succeeded", {"n": seq})
    while log._pending:  # handed to the writer thread ...
        time.sleep(0.01)
    time.sleep(0.5)  # ... and by it to the process, which waits for the lock
    print("sent", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_records_handed_to_the_writer_process_survive_a_kill_9_of_the_application(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    RunLog(db).close()  # the schema, before the test holds the lock
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as script:
        assert script.stdin is not None
        assert script.stdout is not None
        writer = int(script.stdout.readline())
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # nothing is committed while the application runs and dies
        script.stdin.write("go\n")
        script.stdin.flush()
        assert script.stdout.readline().strip() == "sent"
        assert script.wait(60) == -signal.SIGKILL
    assert stored_actions(db, "killed") == 0
    holder.execute("COMMIT")
    holder.close()
    assert gone(writer)  # it finished what it had been handed, then ended: its pipe had closed
    assert stored_actions(db, "killed") == 2000
