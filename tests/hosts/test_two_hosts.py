"""Four agent processes on two "hosts" share one Redis and one PostgreSQL, through a SIGKILL, a pause and a
restart of Redis: the budget, the fair slots, the approvals and the console hold across all of them.

Each host is a folder of its own (no file is shared between hosts); each process has its own Redis and
PostgreSQL clients, configured only by ``PROCTOR_STORE`` and ``PROCTOR_DB``, as a user's would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proctor import ApprovalStore, BudgetPolicy
from proctor.stores import RedisStore
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROCTOR = str(Path(sys.executable).parent / "proctor")
LIMIT = 250  # the team's budget, in calls of cost 1.0
WORKERS = {"a1": "host-a", "a2": "host-a", "b1": "host-b", "b2": "host-b"}
VICTIM = "b2"  # killed with SIGKILL while the others work on

POLICIES = f"""\
defaults: {{lease: 2}}
budgets:
  - {{id: team, per: service, limit: {LIMIT}, period: day}}
policies:
  - {{id: refunds-need-ok, when: {{tool: refund}}, action: require_approval, timeout: 120}}
"""


class Worker:
    """A worker process and the events it printed, read by a thread as they come."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], policies: Path, slots_url: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hosts.worker", name, str(policies), slots_url],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def said(self, event: str) -> list[dict[str, Any]]:
        return [each for each in list(self.events) if each["event"] == event]

    def finish(self, timeout: float) -> None:
        self.process.wait(timeout)
        self._reader.join(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """Wait until ``condition()`` holds; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of ``(began, ended)`` intervals that overlap at one instant."""
    edges = sorted([(began, 1) for began, _ in intervals] + [(ended, -1) for _, ended in intervals])
    running = peak = 0
    for _, step in edges:  # at a tie, an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(300)
def test_four_processes_on_two_hosts_share_budget_slots_approvals_and_console(
    tmp_path: Path, postgres_url: str
) -> None:
    server = RedisServer(persistent=True)  # what it acknowledged survives its restart
    workers: dict[str, Worker] = {}
    try:
        policies = tmp_path / "policies.yaml"
        policies.write_text(POLICIES)
        store_url = f"{server.url}?timeout=0.5"  # the loaded test machine, not the 50 ms default
        slots_url = f"{server.url}?timeout=0.5&slot_lease=1"
        for name, host in WORKERS.items():
            folder = tmp_path / host
            folder.mkdir(exist_ok=True)
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "PROCTOR_STORE": store_url,
                "PROCTOR_DB": postgres_url,
            }
            workers[name] = Worker(name, folder, env, policies, slots_url)

        # Every refund waits for a person; one decision each, made here, releases them on their hosts.
        with ApprovalStore(postgres_url) as desk:
            wait_for("four approval requests", lambda: len(desk.list(status="pending")) == len(WORKERS))
            for record in desk.list(status="pending"):
                desk.decide(record.id, "alice", True, "fine")
        wait_for("every refund", lambda: all(worker.said("refunded") for worker in workers.values()))

        def calls() -> int:
            return sum(len(worker.said("ran")) for worker in workers.values())

        wait_for("30 calls", lambda: calls() >= 30)
        workers[VICTIM].process.send_signal(signal.SIGKILL)
        wait_for("80 calls", lambda: calls() >= 80)
        server.command("CLIENT", "PAUSE", "1500", "ALL")  # every store call meanwhile times out
        time.sleep(1.6)
        wait_for("130 calls", lambda: calls() >= 130)
        server.stop()  # SIGTERM: Redis goes away in the middle of traffic
        time.sleep(0.3)
        server.start()
        for name, worker in workers.items():
            if name != VICTIM:
                worker.finish(timeout=120)
                assert worker.process.returncode == 0, (
                    f"worker {name} exited with {worker.process.returncode}"
                )
        workers[VICTIM].finish(timeout=10)

        survivors = [worker for name, worker in workers.items() if name != VICTIM]
        ran = {name: worker.said("ran") for name, worker in workers.items()}

        # The slots: never more than 3 calls at once, across every process.
        intervals = [(each["began"], each["ended"]) for events in ran.values() for each in events]
        assert most_at_once(intervals) <= 3
        store = RedisStore.from_url(store_url)
        try:
            assert store.slots_held("llm_api", time.time()) == 0  # no slot leaked, the victim's included
            # The budget: spent exactly, nothing left reserved. The victim's last call may have run
            # without settling (killed between the two): its estimate came back after its lease.
            budget = BudgetPolicy(LIMIT, period="day", store=store, namespace="proctor.budgets:team")
            assert budget.reserved("support") == 0
            assert budget.spent("support") == LIMIT
            unsettled = (0, 1) if ran[VICTIM] else (0,)
            assert sum(map(len, ran.values())) - LIMIT in unsettled
        finally:
            store.close()
        # The outage was felt and decided (budgets fail closed), not waited out.
        assert any(worker.said("store_error") for worker in survivors)

        # The approvals: four requests, each approved once, on record in PostgreSQL.
        with ApprovalStore(postgres_url) as desk:
            records = desk.list(limit=None)
            assert [record.status for record in records] == ["approved"] * len(WORKERS)
            assert {len(desk.decisions(record.id)) for record in records} == {1}
        assert {worker.said("refunded")[0]["result"] for worker in workers.values()} == {"refunded 250"}

        # The console's commands see every host's runs in the one database.
        listed = subprocess.run(
            [PROCTOR, "runs", "list", "--db", postgres_url, "--format", "json", "--limit", "100000"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        agents = {run["agent"] for run in json.loads(listed.stdout)}
        assert agents >= {"a1", "a2", "b1"}  # the victim's runs were not all flushed before its SIGKILL
    finally:
        for worker in workers.values():
            worker.close()
        server.close()
