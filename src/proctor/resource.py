"""SharedResource: a limited resource, such as an LLM API that allows N concurrent calls."""

from __future__ import annotations

__all__ = ["SharedResource"]


class SharedResource:
    """A resource that at most ``capacity`` holders may use at once.

    The scheduler given the resource keeps its live counters; read them from
    here (``holder_count``, ``waiter_count``, ...). Give each running
    scheduler its own resource object: schedulers do not share slots.

    Parameters:
        name: what the resource is, such as ``"llm_api"``.
        capacity: how many holders it allows at once, at least 1.
    """

    __slots__ = ("__weakref__", "_capacity", "_holders", "_name", "_waiters")

    def __init__(self, name: str, capacity: int = 1) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"SharedResource capacity must be an int >= 1, got {capacity!r}")
        self._name = str(name)
        self._capacity = capacity
        self._holders = 0
        self._waiters = 0

    @property
    def name(self) -> str:
        """The resource's name."""
        return self._name

    @property
    def capacity(self) -> int:
        """How many holders the resource allows at once."""
        return self._capacity

    @property
    def holder_count(self) -> int:
        """How many slots are held now."""
        return self._holders

    @property
    def waiter_count(self) -> int:
        """How many callers are waiting for a slot now."""
        return self._waiters

    @property
    def available_slots(self) -> int:
        """How many slots are free now."""
        return self._capacity - self._holders

    @property
    def utilization(self) -> float:
        """Fraction of the capacity in use, from 0.0 to 1.0."""
        return self._holders / self._capacity

    def __repr__(self) -> str:
        return (
            f"SharedResource(name={self._name!r}, capacity={self._capacity}, "
            f"holders={self._holders}, waiters={self._waiters})"
        )
