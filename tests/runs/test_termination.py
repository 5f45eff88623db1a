"""SIGTERM (docker stop, Kubernetes, Pool.terminate) keeps every run whose call returned before it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proctor import RunLog

REPO = Path(__file__).resolve().parents[2]

LOOP = textwrap.dedent(
    """
    import signal, sys
    from proctor import RunLog, runlog, set_run_log

    log = set_run_log(RunLog(writer=sys.argv[2]))  # PROCTOR_DB
    while sys.argv[2] == "process" and log.writer_pid is None:  # the process writes from the first call
        log.action("warm-up", 1, "t", "svc", "bot", 1.0, 0.0, "succeeded", {})
        log.flush()

    if sys.argv[1] == "app-handler":  # the application's own handler, installed before proctor's
        def stop(signum, frame):
            print("app handler", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)

    @runlog(service="loop")
    def paid_call(n: int) -> int:
        return n * 2

    n = 0
    while True:
        paid_call(n)
        n += 1
        print(n, flush=True)  # this many calls have returned
    """
)


def env(db: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "PROCTOR_DB": str(db)}


def terminated_loop(db: Path, mode: str, writer: str = "auto") -> tuple[int, int, str]:
    """Run the loop until 3,000 calls returned, SIGTERM it; returns (exit code, calls returned, output)."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOOP, mode, writer], env=env(db), stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert child.stdout is not None
    lines: list[str] = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.strip() == "3000":
            child.send_signal(signal.SIGTERM)
            break
    out, _ = child.communicate(timeout=60)
    lines += out.split()
    returned = max(int(line) for line in lines if line.isdigit())
    return child.returncode, returned, " ".join(lines)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_sigterm_keeps_every_run_that_returned_and_still_terminates(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "runs.db"
    code, returned, _ = terminated_loop(db, "plain", writer)
    assert code == -signal.SIGTERM  # the termination is not swallowed
    with RunLog(db) as log:
        assert len(log.runs(status="succeeded", limit=None)) >= returned >= 3000


def test_sigterm_goes_on_to_the_applications_own_handler(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    code, returned, said = terminated_loop(db, "app-handler")
    assert code == 3
    assert said.endswith("app handler")
    with RunLog(db) as log:
        assert len(log.runs(status="succeeded", limit=None)) >= returned >= 3000


POOL = textwrap.dedent(
    """
    import sys
    from multiprocessing import Pool
    from proctor import RunLog, runlog, set_run_log

    @runlog(service="pool")
    def paid_call(n: int) -> int:
        return n * 2

    if __name__ == "__main__":
        set_run_log(RunLog(writer=sys.argv[1]))  # the workers, forked, each start a writer of their own
        for trial in range(8):
            with Pool(4) as pool:  # leaving the block terminates the workers with SIGTERM
                assert pool.map(paid_call, range(40)) == [n * 2 for n in range(40)]
        print("done", flush=True)
    """
)


@pytest.mark.parametrize("writer", ["auto", "process"])
def test_a_pool_leaving_its_with_block_keeps_its_workers_runs(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "runs.db"
    script = tmp_path / "pooled.py"
    script.write_text(POOL)
    done = subprocess.run(
        [sys.executable, str(script), writer], env=env(db), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with RunLog(db) as log:
        assert len(log.runs(status="succeeded", limit=None)) == 8 * 40


FORKED = textwrap.dedent(
    """
    import os, signal, sys
    from proctor import RunLog, runlog, set_run_log

    set_run_log(RunLog())  # arms proctor's SIGTERM handler in this process

    @runlog(service="forked")
    def paid_call(n: int) -> int:
        return n * 2

    def proctors() -> bool:
        return getattr(signal.getsignal(signal.SIGTERM), "__module__", "") == "proctor.runs.termination"

    print("parent", proctors(), flush=True)
    child = os.fork()
    if child == 0:
        print("child before recording", proctors(), flush=True)
        paid_call(1)
        print("child after recording", proctors(), flush=True)
        sys.stdout.flush()
        os._exit(0)
    os.waitpid(child, 0)
    """
)


def test_a_forked_child_takes_proctors_sigterm_handler_only_once_it_records(tmp_path: Path) -> None:
    """A child that inherited the handler without its watchdog could sleep through SIGTERM in C for
    ever (a pool worker that got no task, signalled just before it waited for one: Pool.terminate
    then waited for it for ever, about one script in 40 before). Until it records, SIGTERM ends it."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED],
        env=env(tmp_path / "runs.db"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "parent True",
        "child before recording False",
        "child after recording True",
    ]
