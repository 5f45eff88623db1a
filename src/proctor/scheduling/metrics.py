"""SchedulerMetrics: ``scheduler.metrics``, loco-agent's live view of what a scheduler has granted."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from proctor.task import Task

if TYPE_CHECKING:
    from proctor.scheduling._core import SchedulerCore

__all__ = ["SchedulerMetrics"]

SESSIONS_KEPT = 10_000
"""How many sessions ``SchedulerMetrics`` keeps costs of: the latest to start."""
TOKENS_KEPT = 1000
"""How many token counts ``actual_tokens_by_agent()`` keeps per agent: the latest."""


class SchedulerMetrics:
    """Costs by agent and by session, completions, queue depths and token counts of one scheduler.

    A task counts once its grant ends (however the work ended), at the cost the
    budgets settle on: ``grant.cost`` when the work set it, else ``Task.cost``,
    else the weight. Rejected tasks count nowhere. Memory stays bounded: the
    latest 10,000 sessions and 1,000 token counts per agent are kept.
    """

    def __init__(self, scheduler: SchedulerCore[Any], ema_alpha: float = 0.3) -> None:
        self._scheduler = scheduler
        self._cost: dict[str, float] = {}  # the scheduler adds to it when a grant ends
        self._session_cost: dict[str, dict[str, float]] = {}
        self._tokens: dict[str, deque[int]] = {}
        self._total_tokens = 0
        self._ema: dict[str, float] = {}
        self._ema_alpha = ema_alpha

    def _count_session(self, agent_id: str, session_id: str, cost: float) -> None:
        sessions = self._session_cost
        costs = sessions.get(session_id)
        if costs is None:
            if len(sessions) >= SESSIONS_KEPT:
                del sessions[next(iter(sessions))]
            costs = sessions[session_id] = {}
        costs[agent_id] = costs.get(agent_id, 0.0) + cost

    def cost_by_agent(self) -> dict[str, float]:
        """The summed cost of each agent's granted tasks (a copy)."""
        return dict(self._cost)

    def total_cost(self) -> float:
        """The summed cost of every granted task."""
        return sum(self._cost.values())

    def agent_cost(self, agent_id: str) -> float:
        """The summed cost of ``agent_id``'s granted tasks; 0.0 for an agent without any."""
        return self._cost.get(agent_id, 0.0)

    def wait_time_by_agent(self) -> dict[str, float]:
        """Mean ``age`` (seconds waited in the queue) of each agent's kept ``completed_tasks``, if any."""
        result: dict[str, float] = {}
        for agent_id, agent in self._scheduler.agents.items():
            completed = agent.completed_tasks
            if completed:
                result[agent_id] = sum(task.age for task in completed) / len(completed)
        return result

    def resource_utilization(self) -> float:
        """The fraction of the resource's slots held now."""
        return self._scheduler.resource.utilization

    def queue_depth_by_agent(self) -> dict[str, float]:
        """Each known agent's ``queue_depth_weighted``."""
        return {agent_id: agent.queue_depth_weighted for agent_id, agent in self._scheduler.agents.items()}

    def completed_by_agent(self) -> dict[str, int]:
        """How many tasks of each known agent's queue were completed (all of them, not only those kept)."""
        return {agent_id: agent._done for agent_id, agent in self._scheduler.agents.items()}

    def cost_by_session(self) -> dict[str, float]:
        """The summed cost of the granted tasks of each ``Task.session_id``."""
        return {session: sum(costs.values()) for session, costs in self._session_cost.items()}

    def session_cost(self, session_id: str) -> float:
        """The summed cost of the granted tasks of one session; 0.0 for an unknown one."""
        return sum(self._session_cost.get(session_id, {}).values())

    def cost_by_session_and_agent(self, session_id: str) -> dict[str, float]:
        """One session's cost, by agent."""
        return dict(self._session_cost.get(session_id, {}))

    def sessions(self) -> list[str]:
        """The sessions with a granted task, in the order they first had one."""
        return list(self._session_cost)

    def record_actual_tokens(self, agent_id: str, task: Task, actual_tokens: int) -> None:
        """Note the tokens a finished task really used; they update ``empirical_weight(task.task_type)``."""
        tokens = self._tokens.get(agent_id)
        if tokens is None:
            tokens = self._tokens[agent_id] = deque(maxlen=TOKENS_KEPT)
        tokens.append(actual_tokens)
        self._total_tokens += actual_tokens
        previous = self._ema.get(task.task_type)
        self._ema[task.task_type] = (
            float(actual_tokens)
            if previous is None
            else self._ema_alpha * actual_tokens + (1 - self._ema_alpha) * previous
        )

    def empirical_weight(self, task_type: str) -> float | None:
        """The moving average of the tokens recorded for ``task_type``; None before the first."""
        return self._ema.get(task_type)

    def actual_tokens_by_agent(self) -> dict[str, list[int]]:
        """The latest token counts recorded for each agent, in the order recorded (copies)."""
        return {agent_id: list(tokens) for agent_id, tokens in self._tokens.items()}

    def total_actual_tokens(self) -> int:
        """The sum of every token count ever recorded."""
        return self._total_tokens

    def __repr__(self) -> str:
        return f"<SchedulerMetrics total_cost={self.total_cost():g} agents={len(self._cost)}>"
