"""TerminalChannel: ask the person at the attached terminal."""

from __future__ import annotations

import select
import sys
from typing import TextIO

from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest

__all__ = ["TerminalChannel"]


class TerminalChannel(ApprovalChannel):
    """Prints the request and reads y/n from the terminal, within the request's timeout.

    Parameters:
        stdin, stdout: the terminal; ``sys.stdin`` / ``sys.stderr`` by default.
    """

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stderr

    @staticmethod
    def available() -> bool:
        """Whether a person can answer: standard input and error are terminals."""
        return sys.stdin.isatty() and sys.stderr.isatty()

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        out = self._out
        out.write(
            f"\nproctor: approval needed ({request.rule_id}): {request.message}\n"
            f"  {request.agent} wants to call {request.tool} in run {request.run_id}\n"
            f"  arguments: {dict(request.args)!r}\n"
            f"  approve? [y/N] (waiting {request.timeout:g}s) "
        )
        out.flush()
        ready, _, _ = select.select([self._in], [], [], request.timeout)
        if not ready:
            out.write("\n  no answer in time\n")
            return None
        answer = self._in.readline().strip().lower()
        return ApprovalDecision(answer in ("y", "yes"), approver="terminal")
