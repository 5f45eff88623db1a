"""Recorder: what the run log (and a replay) learns of a call; the null recorder for calls no log sees.

Every driver goes through the same steps whatever the call: ``opened`` before
the checks, ``replayed`` for the answer a replay has, ``closed`` at every end.
A call outside any recorded or replayed run has the null recorder, whose steps
do nothing but give back what a call that raised was holding.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from proctor.guard._call import LIVE, Call, decisions_of, usage_cost
from proctor.runtime.run import WatchedRun

if TYPE_CHECKING:
    from proctor.guard._flow import Guard

__all__ = ["NULL_RECORDER", "RECORDER", "Recorder"]


class Recorder:
    """Tells the run log, and the replay a run is, how each call of a watched run went."""

    __slots__ = ()

    def opened(self, guard: Guard, call: Call) -> None:
        """The call began: a run's own call starts its run in the log; a tool call gets its number."""
        call.started = time.time()
        run = call.run
        if call.parent is None:
            resumed_from = None
            if run.replay is not None:
                run.replay.continued_as = run.run_id
                if run.replay.resuming:
                    resumed_from = run.replay.record.run_id
            if run.log is not None:
                run.log.run_started(
                    run.run_id,
                    service=guard.service,
                    agent=guard.agent,
                    tool=guard.tool,
                    function=guard.path,
                    started=call.started,
                    input=call.bound,
                    labels=guard.stored_labels,
                    resumed_from=resumed_from,
                )
            return
        call.seq = cast(WatchedRun, run)._next_seq()
        if run.replay is not None:
            call.recorded = run.replay.match(call.seq, guard.tool, call.bound)

    def replayed(self, guard: Guard, call: Call) -> Any:
        """In a replay, a tool call's recorded result (or error); ``LIVE`` when the call must run.

        The call is charged what the recording says it cost: when that is not what its
        result's ``usage.cost`` or its estimate say, it is charged as ``add_cost`` would. In a
        resume, a call answered from the run it continues is charged nothing (that run paid).
        """
        replay = call.run.replay
        if replay is None or call.parent is None:
            return LIVE
        recorded = call.recorded
        if replay.resuming:
            call.frame.reported = 0.0
            answered, result = replay.outcome(call.seq, guard.tool, call.bound, recorded, call.frame)
            if not answered:
                call.frame.reported = None
                return LIVE
            return result
        spent = recorded.actual_cost if recorded is not None else None
        if spent:
            call.frame.reported = spent  # a recorded error is charged this too; a result may say less
            with call.run._lock:
                call.run.cost += spent
        answered, result = replay.outcome(call.seq, guard.tool, call.bound, recorded, call.frame)
        if not answered:
            if spent:
                call.frame.reported = None
                with call.run._lock:
                    call.run.cost -= spent
            return LIVE
        usage = usage_cost(result)
        if spent and (call.estimate if usage is None else usage) == spent:
            call.frame.reported = None  # finish() charges it from the result, as the recording did
            with call.run._lock:
                call.run.cost -= spent
        return result

    def closed(
        self,
        guard: Guard,
        call: Call,
        status: str,
        duration: float | None,
        result: Any,
        returned: Any,
        error: BaseException | None,
    ) -> None:
        """Tell the run log (and a replay) how the call went; a call that raised gives back its holds."""
        if error is not None and not call.settled:  # a call that returned was accounted already
            call.actual = call.frame.reported or 0.0
            guard.abandon(call)
        decisions = decisions_of(call)
        run = call.run
        if call.parent is None:
            if run.replay is not None:
                run.replay.finished(status, returned, error, decisions, run.cost)
            if run.log is not None:
                run.log.run_finished(
                    run.run_id,
                    status=status,
                    ended=time.time(),
                    output=returned,
                    error=error,
                    estimated_cost=call.estimate,
                    actual_cost=call.actual,
                    cost=run.cost,
                    decisions=decisions,
                    approval=call.approval,
                    effects=run.effects,
                )
            return
        if run.replay is not None:
            run.replay.decided(call.seq, guard.tool, decisions)
        if run.log is not None:
            started = call.started
            if call.decided_at is not None:  # what-if sees calls in the order they were decided,
                started = call.decided_at  # and each running until it let go of its estimate
                if duration is not None and call.approval is None:
                    duration = time.time() - started
            run.log.action(  # positional: this is every recorded call's path
                run.run_id,
                call.seq,
                guard.tool,
                guard.service,
                guard.agent,
                started,
                duration,
                status,
                call.bound,
                call.requested,
                result,
                error,
                guard.stored_labels,
                call.estimate,
                call.actual,
                decisions,
                call.approval,
                run.effects,
            )


class _NullRecorder(Recorder):
    """For calls outside any recorded or replayed run: nothing is told, nothing is answered."""

    __slots__ = ()

    def opened(self, guard: Guard, call: Call) -> None:
        pass

    def replayed(self, guard: Guard, call: Call) -> Any:
        return LIVE

    def closed(
        self,
        guard: Guard,
        call: Call,
        status: str,
        duration: float | None,
        result: Any,
        returned: Any,
        error: BaseException | None,
    ) -> None:
        if error is not None:
            guard.abandon(call)


RECORDER = Recorder()
NULL_RECORDER: Recorder = _NullRecorder()
