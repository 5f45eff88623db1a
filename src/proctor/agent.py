"""Agent: a party that competes with others for a shared resource."""

from __future__ import annotations

from dataclasses import dataclass, field

from proctor.types import AgentId

__all__ = ["Agent", "AgentStats"]


@dataclass(slots=True)
class AgentStats:
    """Running counters of one agent's requests; constant size however long it runs."""

    granted: int = 0
    """Requests that got a slot and passed every policy."""
    rejected: int = 0
    """Requests that got a slot but were rejected by a policy."""
    timed_out: int = 0
    """Requests that gave up waiting (``timeout=``)."""
    cancelled: int = 0
    """Requests cancelled or interrupted while waiting."""
    wait_total: float = 0.0
    """Seconds waited, summed over granted and rejected requests."""
    wait_max: float = 0.0
    """Longest single wait, in seconds."""

    @property
    def wait_mean(self) -> float:
        """Mean wait in seconds of the requests that reached a slot."""
        served = self.granted + self.rejected
        return self.wait_total / served if served else 0.0


@dataclass(slots=True, eq=False)
class Agent:
    """An agent known to a scheduler.

    Parameters:
        agent_id: unique identifier within the scheduler.
        name: a readable name, for people.
        agent_type: a category chosen by the caller, such as ``"batch"``.
    """

    agent_id: AgentId
    name: str = ""
    agent_type: str = "default"
    stats: AgentStats = field(default_factory=AgentStats, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.agent_id, str) or not self.agent_id:
            raise ValueError(f"agent_id must be a non-empty string, got {self.agent_id!r}")
