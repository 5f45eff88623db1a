"""The built-in approval channels."""

from __future__ import annotations

import io
import os

from proctor import ApprovalDecision, ApprovalRequest, AutoChannel, CallbackChannel, TerminalChannel

REQUEST = ApprovalRequest(
    rule_id="pay",
    message="payments over 100 need finance",
    approvers=("finance",),
    timeout=0.2,
    service="billing",
    agent="bot",
    tool="pay",
    run_id="r1",
    args={"amount": 500},
)


def test_terminal_channel_reads_the_answer_from_its_input() -> None:
    read, write = os.pipe()
    with os.fdopen(read) as stdin, os.fdopen(write, "w") as typed:
        out = io.StringIO()
        typed.write("y\n")
        typed.flush()
        decision = TerminalChannel(stdin=stdin, stdout=out).request(REQUEST)
        assert decision == ApprovalDecision(True, "terminal")
        assert "approval needed (pay): payments over 100 need finance" in out.getvalue()
        assert "{'amount': 500}" in out.getvalue()
        typed.write("no\n")
        typed.flush()
        refused = TerminalChannel(stdin=stdin, stdout=out).request(REQUEST)
        assert refused == ApprovalDecision(False, "terminal")
        # Nobody types: no decision once the timeout passes.
        assert TerminalChannel(stdin=stdin, stdout=out).request(REQUEST) is None
        assert "no answer in time" in out.getvalue()


def test_callback_and_auto_channels() -> None:
    below_limit = CallbackChannel(lambda request: request.args["amount"] < 1000)
    assert below_limit.request(REQUEST) == ApprovalDecision(True, "callback")
    decision = ApprovalDecision(False, "carol", "over budget")
    assert CallbackChannel(lambda request: decision).request(REQUEST) is decision
    auto = AutoChannel([True], default=False)
    assert auto.request(REQUEST) == ApprovalDecision(True, "auto")
    assert auto.request(REQUEST) == ApprovalDecision(False, "auto")
    assert auto.requests == [REQUEST, REQUEST]


def test_a_handler_must_answer_with_a_decision() -> None:
    import pytest

    with pytest.raises(TypeError, match="returns an ApprovalDecision, True/False or None, got str"):
        CallbackChannel(lambda request: "yes").request(REQUEST)
