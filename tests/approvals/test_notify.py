"""WebhookNotifier against a real HTTP server on loopback: delivery, retries, giving up."""

from __future__ import annotations

import logging

import pytest

from proctor import ApprovalStore, Approvers
from proctor.approvals import Person, WebhookNotifier
from tests.approvals.helpers import REQUEST, WebhookReceiver, request

FAST = (0.01, 0.02, 0.04, 0.08)


def test_a_webhook_is_retried_until_it_is_delivered(store: ApprovalStore) -> None:
    receiver = WebhookReceiver(failures=2)
    try:
        approvers = Approvers({"finance": receiver.url + "/hook"})
        notifier = WebhookNotifier("http://console.example:8470/", retries=FAST)
        record = store.create(REQUEST)
        assert notifier.notify(record, approvers) == 1
        assert notifier.flush(30)
        assert receiver.attempts == 3
        assert (notifier.sent, notifier.failed) == (1, 0)
        assert receiver.paths == ["/hook"]
        assert receiver.bodies == [
            {
                "id": record.id,
                "run_id": "run-1",
                "service": "support",
                "agent": "refund-bot",
                "tool": "refund",
                "rule_id": "big_refund",
                "rule_name": "Big refunds",
                "message": "refunds over 100 need the finance team",
                "args": {"amount": 250, "customer": "[REDACTED:email]"},
                "approvers": ["finance"],
                "quorum": 1,
                "deadline": record.deadline,
                "url": f"http://console.example:8470/approvals/{record.id}",
            }
        ]
    finally:
        receiver.close()


def test_a_webhook_that_keeps_failing_is_given_up_and_logged(
    store: ApprovalStore, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(failures=1000)
    try:
        notifier = WebhookNotifier(retries=(0.01, 0.01))
        record = store.create(REQUEST)
        notifier.notify(record, Approvers({"finance": receiver.url}))
        with caplog.at_level(logging.INFO, logger="proctor.approvals"):
            assert notifier.flush(30)
        assert receiver.attempts == 3
        assert (notifier.sent, notifier.failed) == (0, 1)
        assert "failed 3 times, last: HTTP 500" in caplog.text
        assert f"`proctor approvals show {record.id}`" in caplog.text
        assert store.get(record.id).pending  # the request is untouched
    finally:
        receiver.close()


def test_one_post_per_group_with_a_webhook(store: ApprovalStore, receiver: WebhookReceiver) -> None:
    approvers = Approvers(
        {"finance": receiver.url + "/finance", "dba": receiver.url + "/dba", "sec": None},
        [Person("alice", frozenset({"oncall"}))],
    )
    notifier = WebhookNotifier(retries=FAST)
    assert notifier.notify(store.create(request(approvers=("finance", "sec"))), approvers) == 1
    assert notifier.notify(store.create(request(approvers=("oncall",))), approvers) == 0
    # A request without groups goes to every group that has a webhook.
    assert notifier.notify(store.create(request(approvers=())), approvers) == 2
    assert notifier.flush(30)
    assert sorted(receiver.paths) == ["/dba", "/finance", "/finance"]


def test_the_console_link_comes_from_the_environment(
    store: ApprovalStore, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_CONSOLE_URL", "https://approvals.example.com/proctor/")
    notifier = WebhookNotifier(retries=FAST)
    record = store.create(REQUEST)
    notifier.notify(record, Approvers({"finance": receiver.url}))
    assert notifier.flush(30)
    assert receiver.bodies[0]["url"] == f"https://approvals.example.com/proctor/approvals/{record.id}"


def test_notify_never_raises(store: ApprovalStore, caplog: pytest.LogCaptureFixture) -> None:
    notifier = WebhookNotifier(retries=())
    record = store.create(REQUEST)
    assert notifier.notify(record, None) == 0  # type: ignore[arg-type]
    assert f"could not queue the webhooks of approval {record.id}" in caplog.text
    # Nothing listens on port 9 of loopback: the POST fails, on the notifier's thread only.
    assert notifier.notify(record, Approvers({"finance": "http://127.0.0.1:9/hook"})) == 1
    assert notifier.flush(30)
    assert notifier.failed == 1
