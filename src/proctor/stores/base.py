"""Store and its capabilities: where policies keep their shared state.

Policies hold the algorithms and reach state only through a store; a store
knows nothing about budgets or rates. A store is a small ``Store`` base (its
URL scheme, driver-error translation, ``close``) plus the capabilities it
serves, as mixins: ``LedgerSupport`` (spend ledgers with leased reservations),
``TokenBucketSupport`` (rate buckets) and ``SlotLeaseSupport`` (the slots of a
named resource, held as leases with fencing tokens). A policy or a scheduler
requires the capability it needs and refuses a store without it, never
checking the backend's type.

Each operation that checks and changes state is atomic, so a policy on a
shared store keeps its guarantees across threads, processes and hosts.
Amounts in ledgers are integers in the policy's own unit (the budget policy
uses billionths of a currency unit), so that sums are exact.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from proctor.errors import ConfigurationError, StoreError

__all__ = [
    "LedgerSupport",
    "SlotLeaseSupport",
    "Store",
    "TokenBucketSupport",
    "known_schemes",
    "missing_capability",
]

_SCHEMES: dict[str, type[Store]] = {}

EXPIRED_KEPT = 86_400.0
"""Seconds an expired lease is remembered after its expiry, so that its late settle still counts once."""

# The operations whose driver errors the base translates into StoreError.
_OPERATIONS = (
    "reserve",
    "reserve_if",
    "settle",
    "release",
    "spend",
    "get",
    "clear",
    "keys",
    "take",
    "refund",
    "peek",
    "acquire_slot",
    "hand_over_slot",
    "renew_slot",
    "release_slot",
    "slots_held",
    "close",
)


class Store(ABC):
    """Abstract state backend: a URL scheme, driver-error translation and ``close``.

    Subclasses set ``SCHEME`` (which registers them for ``store_from_url``),
    implement ``from_url`` and inherit the capability mixins they serve.
    Driver exceptions listed in ``base_exceptions`` are raised as
    ``StoreError`` (the original is kept in ``StoreError.store_error``), so no
    backend's own exception escapes proctor.
    """

    SCHEME: ClassVar[str] = ""
    """The URL scheme that selects this store in ``store_from_url``."""

    base_exceptions: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions of the backend's driver that mean the store failed."""

    blocking: ClassVar[bool] = True
    """True when an operation may wait on I/O or on other processes: async callers run it off the loop."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        scheme = cls.__dict__.get("SCHEME")  # a subclass does not take over its parent's scheme
        if scheme:
            _SCHEMES[scheme] = cls
        if cls.base_exceptions:
            for name in _OPERATIONS:
                method = cls.__dict__.get(name)
                if method is not None:
                    setattr(cls, name, _translating(method, cls.base_exceptions))

    @classmethod
    @abstractmethod
    def from_url(cls, url: str) -> Store:
        """Build the store that a URL such as ``memory://`` names."""

    def close(self) -> None:  # noqa: B027 - a store without connections has nothing to close
        """Release the store's connections; state kept outside the process stays."""


class LedgerSupport(ABC):
    """Spend ledgers: committed spend, and reservations held as leases until settled.

    A ledger belongs to one period (``window``); a ledger last used in an
    earlier period starts the current one with nothing spent, while
    reservations carry over. A reservation is a lease with an id and an
    expiry: one whose holder died is given back once it expires (at the
    ledger's next operation), and a settle that arrives later still records
    the actual spend, once.
    """

    @abstractmethod
    def reserve(
        self, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
    ) -> tuple[int | None, int, int]:
        """Atomically reserve ``amount`` on the ledger ``key`` if it fits under ``limit``.

        :param key: the ledger.
        :param amount: what to reserve.
        :param limit: the most that spent plus reserved may reach; None for no limit.
        :param window: the current period.
        :param now: the current Unix time; leases that expired by then are given back first.
        :param lease: seconds the reservation is held before it is given back.
        :returns: the lease id (None when it did not fit), and the spent and
            reserved amounts before this call.
        """

    @abstractmethod
    def reserve_if(
        self,
        ledgers: Sequence[tuple[str, int]],
        amount: int,
        now: float,
        lease: float,
        admit: Callable[[int, int], bool],
    ) -> list[int] | None:
        """Atomically ask ``admit`` about the first ledger, then reserve ``amount`` on every one.

        :param ledgers: ``(key, window)`` pairs; ``admit`` sees the first one's
            spent and live reserved amounts (leases expired by ``now`` given back).
        :param amount: what to reserve on each ledger when admitted; 0 reserves nothing.
        :param admit: decides from those two amounts; it runs inside the store's
            transaction, so it must be short and must not use the store.
        :returns: one lease id per ledger (empty when ``amount`` is 0), or None
            when ``admit`` said no.
        """

    @abstractmethod
    def settle(self, key: str, lease_id: int, actual: int, window: int) -> bool:
        """Replace the reservation ``lease_id`` by committed spend of ``actual``.

        Idempotent: returns False, changing nothing, when the lease was
        already settled or released. A lease that expired is still recorded.
        """

    @abstractmethod
    def release(self, key: str, lease_id: int) -> None:
        """Give back the reservation ``lease_id``, which will not be spent; idempotent."""

    @abstractmethod
    def spend(self, key: str, amount: int, window: int) -> None:
        """Add ``amount`` of committed spend made without a reservation."""

    @abstractmethod
    def get(self, key: str, window: int, now: float) -> tuple[int, int]:
        """The spent amount of ledger ``key`` in period ``window``, and what leases live at ``now`` hold."""

    @abstractmethod
    def clear(self, key: str) -> None:
        """Forget what ledger ``key`` has spent; outstanding reservations stay."""

    @abstractmethod
    def keys(self, prefix: str) -> Iterator[str]:
        """Every ledger key that starts with ``prefix``."""


class TokenBucketSupport(ABC):
    """Token buckets: a level that refills at a rate up to a capacity."""

    @abstractmethod
    def take(self, key: str, tokens: float, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        """Atomically take ``tokens`` from bucket ``key`` if it holds that many.

        :param key: the bucket; a new bucket starts full.
        :param tokens: how many to take.
        :param capacity: the most the bucket holds (its burst).
        :param rate: tokens added per second.
        :param now: the current time in seconds, from the policy's clock.
        :returns: whether they were taken, and the level afterwards.
        """

    @abstractmethod
    def refund(self, key: str, tokens: float, capacity: float) -> None:
        """Put back tokens taken for an action that was rolled back."""

    @abstractmethod
    def peek(self, key: str, capacity: float, rate: float, now: float) -> float:
        """The level of bucket ``key`` at ``now``, without taking anything."""


class SlotLeaseSupport(ABC):
    """The slots of named resources: at most ``capacity`` live leases per name, across the store's users.

    A slot is held as a lease: a holder (who, for people), an expiry (renewed
    while the work runs) and a fencing token, an integer larger than that of
    any earlier lease of the same name, which a resource can use to refuse a
    holder whose lease has ended. A lease whose holder died is given back once
    it expires, at the name's next operation. Giving a lease back twice
    changes nothing. Every operation is one atomic step. With this capability
    alone, the store only counts the slots and a scheduler chooses among its own
    waiters; a store that also serves ``SlotQueueSupport`` (``stores/slot_queue.py``)
    keeps every process's waiters and chooses among them all.
    """

    slot_lease: float = math.inf
    """Seconds a scheduler leases a slot for, renewing it while the work runs; infinity: until released.

    Infinite leases suit a store that lives and dies with its holders' process.
    """

    @abstractmethod
    def acquire_slot(self, resource: str, capacity: int, holder: str, now: float, lease: float) -> int | None:
        """Atomically take a slot of ``resource`` if fewer than ``capacity`` leases live at ``now``.

        :param resource: the resource's name; every user of the name shares its slots.
        :param capacity: how many leases of the name may live at once.
        :param holder: who takes the slot, for people reading the store.
        :param now: the caller's clock; leases that expired by then are given back first.
        :param lease: seconds until the lease expires unless renewed (may be infinite).
        :returns: the lease's fencing token, or None when every slot is held.
        """

    @abstractmethod
    def hand_over_slot(self, resource: str, token: int, holder: str, now: float, lease: float) -> int | None:
        """Atomically end lease ``token`` and give its slot to ``holder`` as a new lease with a larger token.

        The slot passes straight on: no other user can take it in between.
        :returns: the new lease's fencing token, or None, changing nothing,
            when lease ``token`` is no longer live (released, or expired and
            given back); the caller then asks with ``acquire_slot``.
        """

    @abstractmethod
    def renew_slot(self, resource: str, token: int, now: float, lease: float) -> bool:
        """Extend live lease ``token`` to expire ``lease`` seconds after ``now``; False if it is not live."""

    @abstractmethod
    def release_slot(self, resource: str, token: int) -> bool:
        """Give back the slot of lease ``token``; idempotent: False, changing nothing, if it is not live."""

    @abstractmethod
    def slots_held(self, resource: str, now: float) -> int:
        """How many leases of ``resource`` live at ``now``."""


def scheme_class(scheme: str) -> type[Store] | None:
    """The store class registered for a URL scheme, if any."""
    return _SCHEMES.get(scheme)


def known_schemes() -> list[str]:
    """The URL schemes of every store class loaded so far."""
    return sorted(_SCHEMES)


def _translating(
    method: Callable[..., Any], driver_errors: tuple[type[BaseException], ...]
) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except driver_errors as exc:
            raise StoreError(f"{method.__qualname__} failed: {exc}", exc) from exc

    return wrapper


def missing_capability(store: object, capability: type, user: str) -> ConfigurationError:
    """The error for ``user`` given a ``store`` that does not serve ``capability``."""
    scheme = getattr(store, "SCHEME", "") or "no scheme"
    return ConfigurationError(
        f"{user} needs a store with {capability.__name__}; {type(store).__name__} ({scheme}) "
        "does not serve it. Known schemes: " + ", ".join(f"{s}://" for s in known_schemes())
    )
