"""SharedResource: a limited resource, such as an LLM API that allows N concurrent calls."""

from __future__ import annotations

from proctor.errors import ConfigurationError
from proctor.stores._default import shared_store
from proctor.stores.base import Store
from proctor.stores.memory import MemoryStore

__all__ = ["ON_STORE_ERROR", "SharedResource"]

ON_STORE_ERROR = ("closed", "local_share")
"""What a request for a slot may do when the store fails: raise, or use this process's local share."""


def _local_share(capacity: int, on_store_error: str, processes: int | None) -> int:
    """The slots one of ``processes`` processes grants while the store fails; 0 with ``"closed"``."""
    if on_store_error == "closed":
        if processes is not None:
            raise ConfigurationError(
                "processes is the number of processes that share the resource while the store is down: "
                "it goes with on_store_error='local_share'"
            )
        return 0
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigurationError(
            "on_store_error='local_share' needs processes=N, the number of processes that share the "
            f"resource (each then grants capacity // N slots while the store is down), got {processes!r}"
        )
    if capacity // processes < 1:
        raise ConfigurationError(
            f"a capacity of {capacity} shared by {processes} processes leaves each no slot while the store "
            "is down; use fewer processes, or on_store_error='closed'"
        )
    return capacity // processes


class SharedResource:
    """A resource that at most ``capacity`` holders may use at once.

    The slots are held in ``store``, as leases of the name (the store's
    ``SlotLeaseSupport``). The scheduler given the resource keeps the
    counters of its own holders and waiters; read them from here
    (``holder_count``, ``waiter_count``, ...). With a store that keeps the
    waiting callers too (``RedisStore``: ``SlotQueueSupport``), the capacity
    holds across every process using the store and name, and each free slot
    goes to the waiter with the highest L(i) among all of them. With another
    store, give each running scheduler a name of its own: its waiters are
    woken by its own releases only.

    Parameters:
        name: what the resource is, such as ``"llm_api"``.
        capacity: how many holders it allows at once, at least 1.
        store: where the slots are held: a ``Store`` or its URL; by default a
            private in-memory store (``PROCTOR_STORE`` does not apply).
        on_store_error: what a request does when the store fails
            (``StoreError``: down, or slower than its timeout): ``"closed"``
            raises the error; ``"local_share"`` takes one of this process's
            ``capacity // processes`` slots instead (fencing token 0), until the store
            answers. Each such decision is counted in ``proctor.stores.fallback.fallbacks()``.
        processes: how many processes share the resource, for ``"local_share"``
            (as ``RatePolicy``'s): each then grants ``capacity // processes`` slots
            while the store fails, so that together they keep the capacity.
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_holders",
        "_local_share",
        "_name",
        "_on_store_error",
        "_store",
        "_waiters",
    )

    def __init__(
        self,
        name: str,
        capacity: int = 1,
        *,
        store: Store | str | None = None,
        on_store_error: str = "closed",
        processes: int | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"SharedResource capacity must be an int >= 1, got {capacity!r}")
        if on_store_error not in ON_STORE_ERROR:
            choices = ", ".join(map(repr, ON_STORE_ERROR))
            raise ConfigurationError(f"on_store_error must be one of {choices}, got {on_store_error!r}")
        self._on_store_error = on_store_error
        self._local_share = _local_share(capacity, on_store_error, processes)
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
    def on_store_error(self) -> str:
        """``"closed"`` or ``"local_share"``: what a request does when the store fails."""
        return self._on_store_error

    @property
    def local_share(self) -> int:
        """How many slots this process grants without the store while it fails; 0 with ``"closed"``."""
        return self._local_share

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
