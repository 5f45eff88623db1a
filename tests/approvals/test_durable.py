"""DurableChannel: a request waits in the database; people decide it from other threads and processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    ApprovalDecision,
    ApprovalStore,
    Approvers,
    DurableChannel,
    RuleViolationError,
    runlog,
)
from proctor.approvals import ApprovalError, Person, WebhookNotifier
from proctor.runs import recording_into
from tests.approvals.helpers import REQUEST, WebhookReceiver, in_thread, pending_one, request, until

PROCTOR = Path(sys.executable).parent / "proctor"


def subprocess_env(db: Path) -> dict[str, str]:
    """The environment of a child process: this database, and no approvers file or token (open mode)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROCTOR_APPROVERS", "PROCTOR_TOKEN")}
    env["PROCTOR_DB"] = str(db)
    return env


def test_an_approval_reaches_the_waiting_call(store: ApprovalStore) -> None:
    waiting = in_thread(lambda: DurableChannel(store).request(REQUEST))
    record = pending_one(store)
    store.decide(record.id, "alice", True, "ok")
    assert waiting() == ApprovalDecision(True, "alice", "ok")


def test_a_denial_reaches_the_waiting_call(store: ApprovalStore) -> None:
    waiting = in_thread(lambda: DurableChannel(store).request(REQUEST))
    store.decide(pending_one(store).id, "bob", False, "not today")
    assert waiting() == ApprovalDecision(False, "bob", "not today")


def test_no_decision_in_time_expires_the_request(store: ApprovalStore) -> None:
    assert DurableChannel(store).request(request(timeout=0.3)) is None
    [record] = store.list()
    assert record.status == "expired"


def test_a_quorum_decision_names_every_approver(store: ApprovalStore) -> None:
    waiting = in_thread(lambda: DurableChannel(store).request(request(quorum=2)))
    record = pending_one(store)
    store.decide(record.id, "alice", True, "ok")
    store.decide(record.id, "bob", True)
    assert waiting() == ApprovalDecision(True, "alice, bob", "alice: ok")


def test_a_cancelled_request_is_a_refusal(store: ApprovalStore) -> None:
    waiting = in_thread(lambda: DurableChannel(store).request(REQUEST))
    store.cancel(pending_one(store).id)
    assert waiting() == ApprovalDecision(False, None, "the approval request was cancelled")


def test_a_resumed_run_takes_the_decision_given_meanwhile(store: ApprovalStore) -> None:
    earlier = store.create(REQUEST)  # the first attempt's request; its process is gone
    store.decide(earlier.id, "alice", True, "done while you were away")
    decision = DurableChannel(store).request(request(resuming=True))
    assert decision == ApprovalDecision(True, "alice", "done while you were away")
    assert store.list() == [store.get(earlier.id)]  # nobody was asked again


def test_a_resumed_run_waits_on_the_pending_request_with_a_new_deadline(store: ApprovalStore) -> None:
    earlier = store.create(request(timeout=0))
    waiting = in_thread(lambda: DurableChannel(store).request(request(timeout=600, resuming=True)))
    until(lambda: store.get(earlier.id).deadline > earlier.deadline)
    store.decide(earlier.id, "alice", False)
    assert waiting() == ApprovalDecision(False, "alice", None)
    assert len(store.list()) == 1


def test_only_a_resumed_call_with_the_same_arguments_takes_an_earlier_decision(store: ApprovalStore) -> None:
    earlier = store.create(REQUEST)
    store.decide(earlier.id, "alice", True)
    # The same run, action number, tool and rule, but not a resume: people are asked again.
    waiting = in_thread(lambda: DurableChannel(store).request(REQUEST))
    store.decide(until(lambda: store.list(status="pending"))[0].id, "bob", False)
    assert waiting() == ApprovalDecision(False, "bob", None)
    # A resume with other arguments (a refund of a million, not 250) is asked about too.
    bigger = request(args={"amount": 1_000_000}, resuming=True)
    waiting = in_thread(lambda: DurableChannel(store).request(bigger))
    store.decide(until(lambda: store.list(status="pending"))[0].id, "bob", False)
    assert waiting() == ApprovalDecision(False, "bob", None)
    assert len(store.list()) == 3


def test_an_expired_request_is_asked_again(store: ApprovalStore) -> None:
    store.expire(store.create(REQUEST).id)
    waiting = in_thread(lambda: DurableChannel(store).request(REQUEST))
    again = pending_one(store)
    store.decide(again.id, "alice", True)
    assert waiting() == ApprovalDecision(True, "alice", None)
    assert [r.status for r in store.list()] == ["approved", "expired"]


def test_the_groups_webhooks_are_notified(store: ApprovalStore, receiver: WebhookReceiver) -> None:
    notifier = WebhookNotifier(retries=(0.01,))
    approvers = Approvers({"finance": receiver.url}, [Person("alice", frozenset({"finance"}))])
    channel = DurableChannel(store, approvers, notifier)
    waiting = in_thread(lambda: channel.request(REQUEST))
    record = pending_one(store)
    assert notifier.flush(30)
    assert receiver.bodies[0]["id"] == record.id
    store.decide(record.id, "alice", True)
    assert waiting().approved


def test_a_failed_webhook_never_loses_the_request(store: ApprovalStore) -> None:
    notifier = WebhookNotifier(retries=(0.01, 0.01))
    approvers = Approvers({"finance": "http://127.0.0.1:9/hook"}, [Person("alice", frozenset({"finance"}))])
    channel = DurableChannel(store, approvers, notifier)
    waiting = in_thread(lambda: channel.request(REQUEST))
    record = pending_one(store)
    assert notifier.flush(30)
    assert notifier.failed == 1
    assert store.get(record.id).pending
    store.decide(record.id, "alice", True, approvers=approvers)
    assert waiting() == ApprovalDecision(True, "alice", None)


def test_groups_with_nobody_in_them_are_warned_about(
    store: ApprovalStore, caplog: pytest.LogCaptureFixture
) -> None:
    approvers = Approvers({"finance": None}, [Person("alice", frozenset({"dba"}))])
    assert DurableChannel(store, approvers).request(request(timeout=0)) is None
    assert "names group(s) finance with nobody in them: nobody can approve it" in caplog.text


def test_the_default_store_is_the_run_log_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = DurableChannel()
    with recording_into(tmp_path / "runs.db"):
        assert channel.store().path == tmp_path / "runs.db"
    monkeypatch.setenv("PROCTOR_DB", str(tmp_path / "other.db"))
    with recording_into(None):
        assert channel.store().path == tmp_path / "other.db"


POLICY: dict[str, Any] = {
    "policies": [
        {
            "id": "big_refund",
            "when": {"args.amount": {"gt": 100}},
            "action": "require_approval",
            "approvers": ["finance"],
            "timeout": 600,
        }
    ]
}


def test_a_decorated_call_waits_for_people(store: ApprovalStore) -> None:
    @runlog(service="support", policies=POLICY, approvals=DurableChannel(store))
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    assert refund(50) == "refunded 50"
    approved = in_thread(lambda: refund(250))
    store.decide(pending_one(store).id, "alice", True)
    assert approved() == "refunded 250"
    refused = in_thread(lambda: refund(300))
    store.decide(pending_one(store).id, "bob", False, "too much")
    with pytest.raises(RuleViolationError, match="approval refused by bob: too much"):
        refused()


def test_a_cancelled_async_call_withdraws_its_request(store: ApprovalStore) -> None:
    @runlog(service="support", policies=POLICY, approvals=DurableChannel(store))
    async def refund(amount: int) -> str:
        return f"refunded {amount}"

    async def give_up() -> None:
        with pytest.raises(TimeoutError):  # the caller stops waiting: nobody may approve it now
            await asyncio.wait_for(refund(250), 0.5)

    asyncio.run(give_up())  # returns once the waiting thread sees the cancellation, not after 600 s
    [record] = store.list()
    assert record.status == "cancelled"
    with pytest.raises(ApprovalError, match="already cancelled"):
        store.decide(record.id, "alice", True)


def test_a_decorated_call_applies_on_timeout(store: ApprovalStore) -> None:
    def refund_with(on_timeout: str) -> Any:
        policy = {"policies": [{**POLICY["policies"][0], "timeout": 0.2, "on_timeout": on_timeout}]}

        @runlog(service="support", policies=policy, approvals=DurableChannel(store))
        def refund(amount: int) -> str:
            return f"refunded {amount}"

        return refund

    with pytest.raises(RuleViolationError, match="approval timed out"):
        refund_with("deny")(250)
    assert refund_with("allow")(250) == "refunded 250"
    assert [r.status for r in store.list()] == ["expired", "expired"]


def test_a_decision_from_another_process_reaches_the_waiter(
    store: ApprovalStore, db: Path, tmp_path: Path
) -> None:
    waiting = in_thread(lambda: DurableChannel(store).request(request(timeout=600)))
    record = pending_one(store)
    done = subprocess.run(
        [str(PROCTOR), "approvals", "approve", record.id, "--as", "dana", "--comment", "from afar"],
        cwd=tmp_path,
        env=subprocess_env(db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # The waiter could wait ten minutes: it returns because the other process's decision reached it.
    assert waiting() == ApprovalDecision(True, "dana", "from afar")


WAITER = textwrap.dedent(
    """
    import sys
    from proctor import ApprovalRequest, ApprovalStore, DurableChannel

    request = ApprovalRequest(
        rule_id="big_refund", message="refunds over 100 need the finance team", approvers=("finance",),
        timeout=600, service="support", agent="refund-bot", tool="refund", run_id="run-1",
        args={"amount": 250}, seq=3,
    )
    print(DurableChannel(ApprovalStore(sys.argv[1])).request(request))
    """
)


def test_a_killed_waiter_leaves_its_request_decidable(store: ApprovalStore, db: Path, tmp_path: Path) -> None:
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(db)], cwd=tmp_path, env=subprocess_env(db))
    try:
        record = pending_one(store)
    finally:
        waiter.send_signal(signal.SIGKILL)
        waiter.wait(60)
    assert waiter.returncode == -signal.SIGKILL
    assert store.list(status="pending") == [record]
    # The run resumes and asks again: it waits on the same request, which people can still decide.
    resumed = in_thread(
        lambda: DurableChannel(store).request(request(args={"amount": 250}, timeout=600, resuming=True))
    )
    decided = subprocess.run(
        [str(PROCTOR), "approvals", "deny", record.id, "--as", "erin"],
        cwd=tmp_path,
        env=subprocess_env(db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert decided.returncode == 0, decided.stderr
    assert resumed() == ApprovalDecision(False, "erin", None)
    assert [r.id for r in store.list()] == [record.id]
