"""Resuming a run whose process was killed: finished calls are not run again, the rest are."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import proctor
from proctor import ConfigurationError, RunLog, runlog
from proctor.runs import decode, recording_into
from tests.runs import resumable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "notes.txt"
    monkeypatch.setenv("RESUME_NOTES", str(path))
    return path


@pytest.fixture
def log(tmp_path: Path) -> Iterator[RunLog]:
    run_log = RunLog(tmp_path / "runs.db", pii=False)
    with recording_into(run_log):
        yield run_log
    run_log.close()


def killed_during_step_3(log: RunLog, notes: Path) -> str:
    """Run ``job(5)`` in another process, SIGKILL it while step 3 hangs; returns the run's id."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
        "PROCTOR_DB": str(log.path),
        "RESUME_HANG": "1",
        "RESUME_NOTES": str(notes),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "tests.runs.resumable", "5"], env=env, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "hanging"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    [run] = log.runs()
    return run.run_id


def test_a_killed_run_resumes_without_running_its_finished_calls_again(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)
    ticket = notes.read_text().splitlines()[0]
    assert notes.read_text().splitlines()[1:] == ["step 1", "step 2", "step 3"]
    [before] = log.runs()
    assert before.status == "running"
    assert [(a.seq, a.status) for a in log.actions(run_id)] == [(1, "succeeded"), (2, "succeeded")]
    notes.write_text("")

    with recording_into(None):  # the continuation goes to the resumed run's log, whatever the default
        assert proctor.resume(run_id, function=resumable.job, log=log) == [10, 20, 30, 40, 50]
    log.flush()

    # The top-level code ran again and drew the same ticket (uuid4); steps 1 and 2 came from the log.
    assert notes.read_text().splitlines() == [ticket, "step 3", "step 4", "step 5"]
    resumed, original = log.runs()
    assert original.run_id == run_id
    assert original.status == "cancelled"
    assert decode(original.error)["message"] == f"run {run_id} was resumed as run {resumed.run_id}"
    assert resumed.status == "succeeded"
    assert decode(resumed.output) == [10, 20, 30, 40, 50]
    assert [(a.seq, decode(a.result)) for a in log.actions(resumed.run_id)] == [
        (1, 10),
        (2, 20),
        (3, 30),
        (4, 40),
        (5, 50),
    ]
    assert ticket.startswith("ticket ")


def test_a_run_that_ended_or_is_unknown_is_not_resumed(log: RunLog, notes: Path) -> None:
    assert resumable.job(2) == [10, 20]
    proctor.flush()
    [run] = log.runs()
    with pytest.raises(ConfigurationError, match="already ended \\(succeeded\\)"):
        proctor.resume(run.run_id, function=resumable.job)
    with pytest.raises(ConfigurationError, match="no run 'nope'"):
        proctor.resume("nope")


def test_a_run_log_that_cannot_be_opened_leaves_the_calls_working(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-database.db"
    broken.write_text("this is not SQLite")
    script = (
        "from proctor import runlog\n"
        "@runlog(service='s')\n"
        "def agent(x):\n"
        "    return x * 2\n"
        "print(agent(21), agent(1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PROCTOR_DB": str(broken)}
    env.pop("PROCTOR_RECORD", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "2"]
    assert done.stderr.count("runs are not recorded") == 1  # said once, not at every call


def test_a_run_is_resumed_once_even_when_two_callers_try(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)
    notes.write_text("")
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(proctor.resume(run_id, function=resumable.job, log=log))
        except ConfigurationError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(attempt,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # One resumes it; the other finds it claimed (or, if it came late, ended).
    assert [10, 20, 30, 40, 50] in outcomes
    [refusal] = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert refusal in (
        f"run {run_id} is already being resumed, or has just ended",
        f"run {run_id} already ended (cancelled): there is nothing to resume",
    )
    assert notes.read_text().splitlines()[1:] == ["step 3", "step 4", "step 5"]  # each ran once


def test_a_resume_that_cannot_start_leaves_the_run_resumable(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)
    [before] = log.runs()
    assert before.function == "__main__:job"  # run as a script: its function cannot be imported
    notes.write_text("")
    with pytest.raises(ConfigurationError, match="cannot import __main__:job"):
        proctor.resume(run_id, log=log)
    with pytest.raises(ConfigurationError, match="not decorated with @runlog"):
        proctor.resume(run_id, function=lambda count: count, log=log)
    [still] = log.runs()
    assert (still.status, still.ended, still.error) == ("running", None, None)
    assert notes.read_text() == ""  # nothing ran

    assert proctor.resume(run_id, function=resumable.job, log=log) == [10, 20, 30, 40, 50]
    log.flush()
    resumed, original = log.runs()
    assert original.status == "cancelled"
    assert decode(original.error)["message"] == f"run {run_id} was resumed as run {resumed.run_id}"


def test_a_continuation_that_never_opened_its_run_gives_the_claim_back(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)

    @functools.wraps(resumable.job)  # carries the decorated function's guard along
    def wrapper(count: int) -> list[int]:
        raise OSError("the disk went away before the job started")

    with pytest.raises(OSError, match="disk went away"):
        proctor.resume(run_id, function=wrapper, log=log)
    [still] = log.runs()
    assert (still.status, still.ended, still.error) == ("running", None, None)
    assert proctor.resume(run_id, function=resumable.job, log=log) == [10, 20, 30, 40, 50]


@runlog(service="resumable")
async def ajob(count: int) -> list[int]:
    return list(range(count))


def test_resuming_an_async_run_inside_an_event_loop_is_refused_before_the_claim(
    log: RunLog, notes: Path
) -> None:
    run_id = killed_during_step_3(log, notes)

    async def inside_a_loop() -> None:
        proctor.resume(run_id, function=ajob, log=log)

    with pytest.raises(ConfigurationError, match="running event loop"):
        asyncio.run(inside_a_loop())
    [still] = log.runs()
    assert (still.status, still.error) == ("running", None)


DENY_STEP_4: dict[str, Any] = {
    "policies": [{"id": "no_step_4", "when": {"tool": "step", "args.n": {"gte": 4}}, "action": "deny"}]
}


def test_a_crashed_and_resumed_run_each_cost_their_own_work(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)
    crashed = log.run(run_id)
    assert crashed is not None
    assert crashed.cost == pytest.approx(0.02)  # steps 1 and 2 ran (0.01 each) before the crash

    assert proctor.resume(run_id, function=resumable.job, log=log) == [10, 20, 30, 40, 50]
    log.flush()
    resumed, original = log.runs()
    assert original.cost == pytest.approx(0.02)
    assert resumed.cost == pytest.approx(0.03)  # steps 3, 4 and 5; 1 and 2 were answered from the log
    assert resumed.resumed_from == run_id


def test_what_if_takes_a_resume_chain_as_one_run(log: RunLog, notes: Path) -> None:
    run_id = killed_during_step_3(log, notes)
    proctor.resume(run_id, function=resumable.job, log=log)
    log.flush()

    same = proctor.replay_batch(policies={"policies": []}, mode="what-if", log=log)
    [chain] = list(same)
    assert (chain.status_before, chain.status_after) == ("succeeded", "succeeded")
    assert [decision.seq for decision in chain.decisions] == [0, 1, 2, 3, 4, 5]
    assert same.success_rate_before == same.success_rate == 1.0
    assert same.impact.cost_before == pytest.approx(0.05)
    assert same.impact.cost_saved == pytest.approx(0.0)

    stricter = proctor.replay_batch(policies=DENY_STEP_4, mode="what-if", log=log)
    [chain] = list(stricter)
    assert chain.status_after == "denied"
    assert stricter.impact.cost_before == pytest.approx(0.05)
    assert stricter.impact.cost_saved == pytest.approx(0.02)  # steps 4 and 5
    assert stricter.success_rate == 0.0
