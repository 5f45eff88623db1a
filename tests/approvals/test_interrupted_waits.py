"""A synchronous approval wait that ends early (Ctrl-C, SystemExit, an error) withdraws its request;
a call that starts waiting says so."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proctor import (
    ApprovalChannel,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalStore,
    DurableChannel,
    RuleViolationError,
    runlog,
)
from proctor.approvals import ApprovalError
from tests.approvals.helpers import pending_one
from tests.approvals.test_durable import POLICY, subprocess_env

AGENT = textwrap.dedent(
    """
    import sys
    from proctor import runlog

    policy = {"policies": [{"id": "drop", "when": {"tool": "drop_table"}, "action": "require_approval",
                            "timeout": 600}]}

    @runlog(service="dbbot", policies=policy)
    def drop_table(name: str) -> str:
        return f"dropped {name}"

    try:
        drop_table("users")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    """
)


def test_ctrl_c_on_a_sync_wait_withdraws_the_request(store: ApprovalStore, db: Path, tmp_path: Path) -> None:
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT], cwd=tmp_path, env=subprocess_env(db), stdout=subprocess.PIPE, text=True
    )
    try:
        record = pending_one(store)
        agent.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = agent.communicate(timeout=60)
    finally:
        agent.kill()
    assert "interrupted" in out
    assert agent.returncode != 0
    # Nobody is told "drop_table of dbbot goes ahead" for a call that will never run.
    assert store.get(record.id).status == "cancelled"
    with pytest.raises(ApprovalError, match="already cancelled"):
        store.decide(record.id, "alice", True)


class Failing(ApprovalChannel):
    """A user's channel whose wait ends with ``error``; it notes what it was asked to withdraw."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.withdrawn: list[ApprovalRequest] = []

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        raise self.error

    def withdraw(self, request: ApprovalRequest) -> None:
        self.withdrawn.append(request)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), ConnectionError("chat is down")])
def test_any_end_of_a_sync_wait_withdraws_through_the_channel(error: BaseException) -> None:
    channel = Failing(error)

    @runlog(service="support", policies=POLICY, approvals=channel, record=False)
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    with pytest.raises(type(error)):
        refund(250)
    [request] = channel.withdrawn
    assert request.tool.endswith("refund")
    assert dict(request.args) == {"amount": 250}


def test_a_waiting_call_says_what_it_waits_for_and_how_to_decide(
    store: ApprovalStore, caplog: pytest.LogCaptureFixture
) -> None:
    policy = {"policies": [{**POLICY["policies"][0], "timeout": 0.2}]}

    @runlog(service="support", policies=policy, approvals=DurableChannel(store), record=False)
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    with caplog.at_level(logging.WARNING, logger="proctor.approvals"), pytest.raises(RuleViolationError):
        refund(250)
    [record] = store.list()
    [line] = [r.getMessage() for r in caplog.records if r.name == "proctor.approvals"]
    assert f"waits up to 0.2s for approval {record.id} (rule big_refund)" in line
    assert f"`proctor approvals approve {record.id}`" in line
    assert "proctor serve" in line
