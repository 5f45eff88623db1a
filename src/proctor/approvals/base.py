"""ApprovalChannel: how a ``require_approval`` rule reaches a person, and what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proctor._signals import leave_signals_to_main_thread

__all__ = ["ApprovalChannel", "ApprovalDecision", "ApprovalRequest"]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An action waiting for a person's decision.

    ``approvers`` are the groups whose members may decide (empty: anyone who may
    approve at all); ``quorum`` how many distinct people must approve. ``seq``
    is the action's number in run ``run_id`` (0: the run's own call) when the run
    is recorded; ``resuming`` says the call is made again by ``proctor.resume``.
    """

    rule_id: str
    message: str
    approvers: tuple[str, ...]
    timeout: float
    service: str
    agent: str
    tool: str
    run_id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    rule_name: str | None = None
    quorum: int = 1
    seq: int = 0
    resuming: bool = False


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """A person's answer: approved or not, by whom, and why."""

    approved: bool
    approver: str | None = None
    comment: str | None = None


class ApprovalChannel(ABC):
    """Delivers approval requests to people and returns their decisions.

    A synchronous caller calls ``request``; an asynchronous one awaits ``arequest``. A channel
    that implements only ``request`` serves async callers too: ``arequest`` runs it on a thread
    started for that one wait (never in the event loop's default executor, so a crowd of waiting
    coroutines cannot starve ``asyncio.to_thread`` or DNS lookups). That thread is held for the
    whole wait; a channel that should hold none is written as a ``PollingChannel``.
    """

    @abstractmethod
    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """Ask for a decision, waiting at most ``request.timeout`` seconds.

        :returns: the decision, or None when nobody decided in time.
        """

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """``request`` for async callers: what a coroutine awaits while a person decides.

        When the awaiting task is cancelled, ``withdraw`` is called (on a thread) before the
        cancellation goes on.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[ApprovalDecision | None] = loop.create_future()

        def wait() -> None:
            leave_signals_to_main_thread()
            try:
                decision = self.request(request)
            except BaseException as exc:
                _settle(loop, answer, None, exc)
            else:
                _settle(loop, answer, decision, None)

        threading.Thread(target=wait, name="proctor-approval-wait", daemon=True).start()
        try:
            return await answer
        except asyncio.CancelledError:
            threading.Thread(target=self.withdraw, args=(request,), name="proctor-withdraw").start()
            raise

    def withdraw(self, request: ApprovalRequest) -> None:  # noqa: B027 (a hook; doing nothing is right)
        """The caller stopped waiting for ``request`` (interrupted or cancelled); by default nothing happens.

        A channel that keeps requests somewhere closes them, so that nobody decides a call
        that no longer waits, and its ``request`` returns soon.
        """


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[ApprovalDecision | None],
    decision: ApprovalDecision | None,
    error: BaseException | None,
) -> None:
    """From another thread: give ``future`` its outcome, unless its loop or its waiter is gone."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(decision)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)
