"""SharedResource: a limited resource, such as an LLM API that allows N concurrent calls."""

from __future__ import annotations

from proctor.errors import ConfigurationError
from proctor.stores._default import shared_store
from proctor.stores.base import Store
from proctor.stores.memory import MemoryStore

__all__ = ["SharedResource"]


class SharedResource:
    """A resource that at most ``capacity`` holders may use at once.

    The slots are held in ``store``, as leases of the name (the store's
    ``SlotLeaseSupport``). The scheduler given the resource keeps the
    counters of its own holders and waiters; read them from here
    (``holder_count``, ``waiter_count``, ...). Give each running scheduler a
    name of its own in a store: a scheduler's waiters are woken by its own
    releases, not yet by those of another scheduler on the same name.

    Parameters:
        name: what the resource is, such as ``"llm_api"``.
        capacity: how many holders it allows at once, at least 1.
        store: where the slots are held: a ``Store`` or its URL; by default a
            private in-memory store (``PROCTOR_STORE`` does not apply).
    """

    __slots__ = ("__weakref__", "_capacity", "_holders", "_name", "_store", "_waiters")

    def __init__(self, name: str, capacity: int = 1, *, store: Store | str | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"SharedResource capacity must be an int >= 1, got {capacity!r}")
        self._name = str(name)
        self._capacity = capacity
        if store is None:
            store = MemoryStore()
        elif isinstance(store, str):
            store = shared_store(store)
        elif not isinstance(store, Store):
            raise ConfigurationError(f"store= takes a Store or a URL, got {type(store).__name__}")
        self._store: Store = store
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
    def store(self) -> Store:
        """Where the slots are held."""
        return self._store

    @property
    def holder_count(self) -> int:
        """How many slots this resource's scheduler holds now."""
        return self._holders

    @property
    def waiter_count(self) -> int:
        """How many callers are waiting for a slot now."""
        return self._waiters

    @property
    def available_slots(self) -> int:
        """How many slots are free now, as this resource's scheduler counts them."""
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
