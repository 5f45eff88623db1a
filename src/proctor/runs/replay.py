"""Replay: run a recorded run's code again, with its tool calls answered from the recording.

The top-level function runs again with its recorded input; each decorated
call inside it is checked against the policies (the given ones, else the
decorators' own) and then, instead of running, returns its recorded result
or raises its recorded error. ``now()``, ``uuid4()`` and ``rng()`` give back
their recorded values. Approvals are not asked again: a recorded answer is
reused, and a call that now needs an approval it never had is taken as
approved. Nothing reaches the outside world, no budget or scheduler is
charged, and the replay itself is not recorded.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from proctor.approvals.base import ApprovalDecision
from proctor.errors import (
    ConfigurationError,
    ReplayDiverged,
    ReplayedError,
    ResumeStarting,
    RunResumed,
)
from proctor.pii.detector import PIIDetector
from proctor.rules.ruleset import RuleSet
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.default import run_log
from proctor.runs.encode import (
    Unrevivable,
    dumps,
    freeze,
    import_path,
    revive,
    snapshot,
    stored_json,
    thaw,
    to_json,
)
from proctor.runs.log import NO_RESULT, ActionRecord, RunLog, RunRecord, decode
from proctor.runs.result import ActionDecision, Divergence, ReplayBatch, ReplayResult, effective_action
from proctor.runs.selection import select_runs
from proctor.runs.whatif import what_if
from proctor.runtime.context import replaying
from proctor.runtime.playback import replayable

if TYPE_CHECKING:
    from proctor.runtime.context import Frame

__all__ = ["ReplayDiverged", "ReplayedError", "Replayer", "RunResumed", "replay", "replay_batch", "resume"]


class Replayer:
    """One replay in progress: the recording it follows and what it found. Used by ``@runlog``."""

    def __init__(
        self,
        record: RunRecord,
        actions: list[ActionRecord],
        rules: RuleSet | None,
        live: bool,
        log: RunLog,
        *,
        resuming: bool = False,
    ) -> None:
        self.record = record
        self.rules = rules
        self.live = live or resuming
        self.resuming = resuming
        """A resume: calls past the recording run for real, in their slots, asking for approvals."""
        self.continued_as: str | None = None
        """The id of the run this replay is (a resume's new run is recorded)."""
        self.log = log
        """The run log the replay reads (and a resume records its new run in)."""
        # A resume answers only the calls that finished; the others run again.
        self._pending = (
            [action for action in actions if action.duration is not None] if resuming else list(actions)
        )
        self._matched: dict[int, ActionRecord] = {}
        self._decisions: dict[int, ActionDecision] = {}
        effects = _effects_of(record, actions)
        self._seed = effects.get("seed")
        self._queues: dict[str, list[Any]] = {
            kind: list(values) for kind, values in effects.items() if isinstance(values, list)
        }
        self.clock = record.started
        self.divergence: Divergence | None = None
        self._charged: dict[str, float] = {}
        self._baseline: dict[tuple[str, str | None], float] = {}
        self._detector: PIIDetector | None = None
        self.status: str | None = None
        self.output: Any = None
        self.error: BaseException | None = None
        self.cost = 0.0

    # -- matching tool calls to the recording

    def match(self, seq: int, tool: str, bound: Mapping[str, Any]) -> ActionRecord | None:
        """The recorded action this call is: the first not yet taken with its tool and arguments."""
        plain = redacted = None
        for index, action in enumerate(self._pending):
            if action.tool != tool:
                continue
            stored = action.requested_args if action.requested_args is not None else action.args
            if action.redacted:
                if redacted is None:
                    redacted = self._text(bound, redact=True)
                text = redacted
            else:
                if plain is None:
                    plain = self._text(bound, redact=False)
                text = plain
            if stored == text:
                del self._pending[index]
                self._matched[seq] = action
                self.clock = action.started
                return action
        return None

    def outcome(
        self, seq: int, tool: str, bound: Mapping[str, Any], recorded: ActionRecord | None, frame: Frame
    ) -> tuple[bool, Any]:
        """``(True, result)`` for a call answered from the recording, ``(False, None)`` to run it live.

        Raises the recorded error, or ``ReplayDiverged`` where the recording has no answer.
        """
        if recorded is None or recorded.duration is None:
            if self.live:
                return False, None
            reason = "a call the recording does not have" if recorded is None else "a call that was refused"
            self._diverge(seq, self._next_expected(), _describe(tool, bound), f"the replay made {reason}")
            raise ReplayDiverged(str(self.divergence))
        if recorded.result is not None:
            try:
                return True, revive(decode(recorded.result))
            except Unrevivable as exc:
                if self.live:
                    return False, None
                reason = f"its recorded result cannot be rebuilt: {exc}"
                self._diverge(seq, _describe(tool, bound), None, reason)
                raise ReplayDiverged(str(self.divergence)) from None
        if recorded.error is None:
            self._diverge(seq, _describe(tool, bound), None, "the recorded call never finished")
            raise ReplayDiverged(str(self.divergence))
        raise _error(decode(recorded.error))

    def unrecorded(self, tool: str, bound: Mapping[str, Any]) -> None:
        """A call the run log does not record (a generator): raise ``ReplayDiverged`` unless live."""
        if not self.live:
            self._diverge(
                0, None, _describe(tool, bound), "generator calls are not recorded; replay with live=True"
            )
            raise ReplayDiverged(str(self.divergence))

    def approval(self, seq: int) -> ApprovalDecision | None:
        """The recorded answer to this action's approval (the run's own for ``seq`` 0); granted if none."""
        stored = self.record.approval if seq == 0 else getattr(self._matched.get(seq), "approval", None)
        answer = decode(stored)
        if not isinstance(answer, dict):
            return ApprovalDecision(True, "replay", "no approval was recorded; taken as granted")
        if answer.get("approved") is None:
            return None  # it timed out
        return ApprovalDecision(bool(answer["approved"]), answer.get("approver"), answer.get("comment"))

    def effect(self, kind: str) -> Any:
        """The next recorded value of ``kind`` (``seed``, ``now``, ``uuid``); None past the recording."""
        if kind == "seed":
            return self._seed
        values = self._queues.get(kind)
        if values:
            return values.pop(0)
        self._diverge(0, None, f"{kind}()", f"the replay read {kind} more often than the recording")
        return None

    # -- facts on the recording's clock

    def now(self, tz: tzinfo | None) -> datetime:
        """The ``time`` fact: when the recorded action being replayed began."""
        return datetime.fromtimestamp(self.clock, tz)

    def cost_today(self, service: str, agent: str, zone: str | None) -> float:
        """The ``cost_today`` fact: recorded spend before the run that day, plus what the replay spent."""
        key = (f"{service}/{agent}", zone)
        baseline = self._baseline.get(key)
        if baseline is None:
            tz = ZoneInfo(zone) if zone else None
            start = datetime.fromtimestamp(self.record.started, tz)
            midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
            if tz is None:
                midnight = midnight.astimezone()
            baseline = self.log.spent(service, agent, midnight.timestamp(), self.record.started)
            self._baseline[key] = baseline
        return baseline + self._charged.get(key[0], 0.0)

    def charge(self, service: str, agent: str, amount: float) -> None:
        """Count spend of the replay in its ``cost_today``."""
        key = f"{service}/{agent}"
        self._charged[key] = self._charged.get(key, 0.0) + amount

    # -- what the replay decided

    def decided(self, seq: int, tool: str, decisions: list[dict[str, Any]]) -> None:
        """Keep what the policies decided on action ``seq`` (0: the run's own call)."""
        action, rule = effective_action(decisions)
        if seq == 0:
            recorded = effective_action(decode(self.record.decisions))[0]
        else:
            matched = self._matched.get(seq)
            recorded = "unrecorded" if matched is None else effective_action(decode(matched.decisions))[0]
        modified = tuple(
            str(decision["rule"])
            for decision in decisions
            if decision["action"] == "modify" and decision["phase"] == "before"
        )
        self._decisions[seq] = ActionDecision(seq, tool, action, rule, recorded, modified)

    def finished(
        self,
        status: str,
        output: Any,
        error: BaseException | None,
        decisions: list[dict[str, Any]],
        cost: float,
    ) -> None:
        """The run's own call ended: keep how, and what the run spent."""
        self.decided(0, self.record.tool, decisions)
        self.status, self.output, self.error, self.cost = status, output, error, cost

    def result(self) -> ReplayResult:
        """Compare the replay with its recording."""
        record = self.record
        status = self.status or "cancelled"
        decisions = tuple(self._decisions[seq] for seq in sorted(self._decisions))
        changed = any(decision.changed for decision in decisions)
        if self.divergence is None and not changed:
            if status != record.status and not isinstance(self.error, ReplayDiverged):
                self._diverge(0, record.status, status, "the run ended differently")
            elif status == record.status and record.output is not None:
                got = self._text(self.output, redact=record.redacted)
                if got != record.output:
                    self._diverge(0, record.output, got, "the run returned something else")
        if self.divergence is None and not changed:
            left = [action for action in self._pending if action.duration is not None]
            if left:
                first = left[0]
                self._diverge(
                    first.seq, f"{first.tool}({first.args})", None, "the replay did not make this call"
                )
        return ReplayResult(
            run_id=record.run_id,
            mode="replay",
            status_before=record.status,
            status_after=status,
            cost_before=record.cost,
            cost_after=self.cost,
            decisions=decisions,
            divergence=self.divergence,
            output=None if self.output is NO_RESULT else self.output,
            error=None if isinstance(self.error, ReplayDiverged) else self.error,
        )

    # -- helpers

    def _text(self, value: Any, *, redact: bool) -> str:
        """``value`` as the run log would store it, for comparison with stored text."""
        if not redact:
            return stored_json(value)
        if self._detector is None:
            self._detector = PIIDetector()
        return to_json(self._detector.redact(thaw(freeze(value)))[0])

    def _next_expected(self) -> str | None:
        for action in self._pending:
            if action.duration is not None:
                return f"{action.tool}({action.args})"
        return None

    def _diverge(self, seq: int, expected: str | None, got: str | None, reason: str) -> None:
        if self.divergence is None:
            self.divergence = Divergence(seq, expected, got, reason)


def replay(
    run_id: str,
    policies: PolicySpec | None = None,
    *,
    function: Callable[..., Any] | None = None,
    live: bool = False,
    log: RunLog | None = None,
) -> ReplayResult:
    """Replay the recorded run ``run_id`` under ``policies`` (None: the decorators' own).

    Parameters:
        run_id: a run in ``log``; ``proctor runs list`` shows them.
        policies: a policy file path, a list of paths, a parsed mapping or a
            ``RuleSet`` that decides every call of the replay instead of the
            decorators' policies.
        function: the decorated top-level function; imported by the name the
            recording gives when not passed.
        live: let calls the recording has no answer for run for real, instead
            of ending the replay there with a divergence.
        log: the run log; the one new runs are recorded in by default.
    """
    run_log_ = _log_or_default(log)
    record = run_log_.run(run_id)
    if record is None:
        raise ConfigurationError(
            f"no run {run_id!r} in {run_log_.database}; `proctor runs list` shows the recorded runs"
        )
    return _replay_one(run_log_, record, _rules(policies), function, live)


def replay_batch(
    date_range: str | None = None,
    filters: Mapping[str, str] | None = None,
    policies: PolicySpec | None = None,
    *,
    since: float | None = None,
    mode: Literal["replay", "what-if"] = "replay",
    function: Callable[..., Any] | None = None,
    live: bool = False,
    log: RunLog | None = None,
) -> ReplayBatch:
    """Replay every recorded run that started in ``date_range`` and matches ``filters``.

    Parameters:
        date_range: ``"2024-01-01:2024-01-07"`` (whole days, local time) or
            ``"A..B"`` with ISO dates or datetimes; None for all runs.
        filters: ``service``, ``agent``, ``status``, ``tool`` (the run's own).
        policies: as for ``replay``; required in ``"what-if"`` mode.
        since: only runs started at or after this Unix time.
        mode: ``"replay"`` runs the code again (``replay`` per run);
            ``"what-if"`` re-evaluates the recorded actions without any code.
        function, live, log: as for ``replay``.

    Returns the results oldest run first, with ``success_rate`` and ``impact``.
    """
    run_log_ = _log_or_default(log)
    records = select_runs(run_log_, date_range=date_range, filters=filters, since=since)
    rules = _rules(policies)
    if mode == "what-if":
        if rules is None:
            raise ConfigurationError("what-if mode needs policies=: the rules to evaluate the runs against")
        return ReplayBatch(what_if(run_log_, records, rules))
    if mode != "replay":
        raise ConfigurationError(f"mode must be 'replay' or 'what-if', got {mode!r}")
    return ReplayBatch(_replay_one(run_log_, record, rules, function, live) for record in records)


def resume(run_id: str, *, function: Callable[..., Any] | None = None, log: RunLog | None = None) -> Any:
    """Continue a run whose process died before it ended; returns what its top-level call returns.

    The top-level function runs again with the recorded input. Each decorated call that
    finished in the recording (it returned or raised) is answered from the run log and
    does not run again; the calls after it run for real, with their rules, slots and
    budgets. A call that was waiting for an approval asks again and finds its request
    (decided meanwhile, or still pending) instead of making a new one. ``now()``,
    ``uuid4()`` and ``rng()`` give back the values the run had drawn. The continued run
    is recorded as a new run. Raises ``ConfigurationError`` for a run that ended or that
    another caller is resuming (the run is claimed before anything runs). A resume that
    fails before its continuation starts (the function cannot be imported or called) leaves
    the run as it was, to be resumed again. Whether the run's own process is really gone
    is not checked: resume a run only once it is.
    """
    run_log_ = _log_or_default(log)
    record = run_log_.run(run_id)
    if record is None:
        raise ConfigurationError(
            f"no run {run_id!r} in {run_log_.database}; "
            "`proctor runs list --status running` shows the runs to resume"
        )
    if record.status != "running":
        raise ConfigurationError(f"run {run_id} already ended ({record.status}): there is nothing to resume")
    # Everything that can fail before the continuation starts is checked before the claim.
    target = function if function is not None else _function_of(record)
    args, kwargs, guard = _call_of(record, target)
    is_async = inspect.iscoroutinefunction(guard.function)
    if is_async and _in_event_loop():
        raise ConfigurationError(
            f"run {run_id} is async and resume() runs it with asyncio.run(), which cannot be called from a "
            "running event loop; call proctor.resume from synchronous code (or in a thread: "
            "await asyncio.to_thread(proctor.resume, run_id))"
        )
    replayer = Replayer(record, run_log_.actions(record.run_id), None, True, run_log_, resuming=True)
    if not run_log_.claim(run_id, ResumeStarting(run_id)):
        raise ConfigurationError(f"run {run_id} is already being resumed, or has just ended")
    token = replaying.set(replayer)
    try:
        if is_async:
            return asyncio.run(_await(target, args, kwargs))
        return target(*args, **kwargs)
    finally:
        replaying.reset(token)
        if replayer.continued_as is not None:  # the claimed run now names its continuation
            run_log_.run_finished(
                run_id,
                status="cancelled",
                ended=time.time(),
                error=RunResumed(run_id, replayer.continued_as),
                cost=run_log_.actions_cost(run_id),  # what it did before it died; its continuation the rest
            )
        else:  # the continuation never started: the run is still there to resume
            run_log_.unclaim(run_id)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _call_of(record: RunRecord, target: Callable[..., Any]) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """The arguments to call ``target`` with, as recorded, and its decorator's guard."""
    guard = replayable(target)
    if guard is None:
        raise ConfigurationError(
            f"{record.function} is not decorated with @runlog; pass the decorated function"
        )
    try:
        bound = revive(decode(record.input)) if record.input is not None else {}
    except Unrevivable as exc:
        raise ConfigurationError(f"run {record.run_id}: its input cannot be rebuilt ({exc})") from exc
    args, kwargs = guard.unbind(bound)
    return args, kwargs, guard


def _log_or_default(log: RunLog | None) -> RunLog:
    if log is not None:
        return log
    default = run_log()
    if default is not None:
        default.flush()
        return default
    return RunLog()


def _rules(policies: PolicySpec | None) -> RuleSet | None:
    if policies is None or isinstance(policies, RuleSet):
        return policies
    return PolicySource(policies).current()


def _replay_one(
    log: RunLog, record: RunRecord, rules: RuleSet | None, function: Callable[..., Any] | None, live: bool
) -> ReplayResult:
    target = function if function is not None else _function_of(record)
    args, kwargs, guard = _call_of(record, target)
    replayer = Replayer(record, log.actions(record.run_id), rules, live, log)
    token = replaying.set(replayer)
    try:
        if inspect.iscoroutinefunction(guard.function):
            asyncio.run(_await(target, args, kwargs))
        else:
            target(*args, **kwargs)
    except (Exception, ReplayDiverged, asyncio.CancelledError):
        pass  # how the run ended is in the replayer
    finally:
        replaying.reset(token)
    return replayer.result()


async def _await(target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await target(*args, **kwargs)


def _function_of(record: RunRecord) -> Callable[..., Any]:
    if "<locals>" in record.function:
        raise ConfigurationError(
            f"run {record.run_id} was made by {record.function}, a function defined inside another one; "
            "it cannot be imported: pass function="
        )
    try:
        target = import_path(record.function)
    except Unrevivable as exc:
        raise ConfigurationError(f"run {record.run_id}: {exc}; pass function=") from exc
    if not callable(target):
        raise ConfigurationError(f"run {record.run_id}: {record.function} is not a function; pass function=")
    return target  # type: ignore[no-any-return]


def _effects_of(record: RunRecord, actions: list[ActionRecord]) -> dict[str, Any]:
    """The run's nondeterminism: at its end, else (a run cut off) as its latest action saw it."""
    if record.effects is not None:
        return decode(record.effects) or {}
    seen = [decode(action.effects) for action in actions if action.effects is not None]
    return max(
        seen, key=lambda effects: sum(len(v) for v in effects.values() if isinstance(v, list)), default={}
    )


def _error(stored: Any) -> BaseException:
    """The recorded exception, raised again as its own class where that can be rebuilt."""
    if not isinstance(stored, dict):
        return ReplayedError("Exception", str(stored))
    type_name = str(stored.get("type"))
    message = str(stored.get("message", ""))
    try:
        cls = import_path(type_name)
        args = revive(stored.get("args") or [])
        if isinstance(cls, type) and issubclass(cls, BaseException):
            error = cls(*args)
            if str(error) == message:
                return error
    except Exception:  # a class that moved, or whose constructor wants other arguments
        pass
    return ReplayedError(type_name, message)


def _describe(tool: str, bound: Mapping[str, Any]) -> str:
    try:
        return f"{tool}({dumps(snapshot(dict(bound)))})"
    except Exception:  # never let a description end a replay
        return f"{tool}(...)"
