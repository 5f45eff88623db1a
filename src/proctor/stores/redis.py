"""RedisStore: ledgers and token buckets in Redis, exact across every process and host that uses it.

Each operation that checks and changes state is one Lua script (``stores/lua/``):
one round trip, run atomically by the server, never a read on the client
followed by a write. Scripts are sent by SHA (``EVALSHA``) and loaded again when
the server answers ``NOSCRIPT`` (after a restart, a failover or ``SCRIPT FLUSH``).

Time. By default (``clock="server"``) lease expiry and token refill use the
Redis server's ``TIME``, so hosts whose clocks disagree still agree on when a
lease ends; the ``now`` a policy passes is then ignored. The period index
(``window``) still comes from the caller: it is the policy's calendar (its
time zone and period boundaries), so hosts should keep their clocks in NTP sync
near midnight. ``clock="caller"`` uses the caller's ``now`` instead, for tests
and simulations that drive a policy with their own clock.

Keys. A ledger is four keys (a hash of its amounts, its live leases, their
amounts, the recently expired ones) and a bucket one hash, all under
``<prefix>:{<tag>}:``. The hash tag is the key's last part after ``:`` or ``/``
(the agent or service id in proctor's keys), so one agent's ledgers in every
time zone, its budgets and its buckets share a Redis Cluster slot, and a
script touching several of them stays in one slot.

``reserve_if`` runs a Python ``admit`` between a read and a write, so it cannot
be one script. It is optimistic, a compare-and-set on the two numbers ``admit``
sees: ``admit`` decides on the first ledger's spent and reserved amounts as this
store last saw them, and ``reserve_if.lua`` reserves (or, when ``admit`` said no,
only confirms) if the ledger still holds exactly those, after reaping; else it
returns the current amounts, and ``admit`` is asked again about them. ``admit``
depends on nothing else, so what it saw is exactly the state the reservation
applies to. It costs one round trip while this process is the ledger's only
writer (the amounts come back from every ``reserve_if`` and ``settle``), one more
per change made by others in between, and nothing is held between round trips,
so a caller that dies there blocks no one. The alternative, ``WATCH``, read,
``MULTI``/``EXEC``, takes three round trips every time on a connection pinned to
the caller, and cannot reap expired leases in its read (its own write would
abort the ``EXEC``). Measured on loopback (bench/redis_store.py, as ratios of a
plain ``GET``): 1.6x this way, 3.0x when another host wrote in between, 3.4x by
``WATCH``; ``reserve`` is 1.5x. The worst case, 8 threads doing nothing but
decide and settle on one ledger, took 6 scripts per decision.

Slots. A resource name's slots are leases in a sorted set (token by expiry), and
the callers waiting for them are in Redis too (``SlotQueueSupport``), with their
agent and weight, under the hash tag of the resource's name (``stores/lua/_slots.lua``
draws the keys; the per-agent and per-process keys a script reaches share that
tag). Every slot script first gives back expired leases and forgets the waiters
of processes that stopped polling, then grants each free slot to the waiter with
the highest L(i) and pushes the grant on its process's list, where a ``BLPOP``
(``wait_for_grants``, on a client of its own) wakes it. A fencing token is the
larger of the last one plus one and the server's time in microseconds, so tokens
keep increasing after a failover that lost the last grants.

Failures. Every call has a socket timeout (``timeout``, 50 ms by default); a
timeout, a refused connection or any other Redis error is raised as
``StoreError`` saying what to do. Nothing is retried by the store: a script
that timed out may have run, and retrying ``spend`` would count twice.

Amounts are integers, kept with ``HINCRBY`` (64-bit); the scripts compare them
as Lua doubles, exact up to 2**53 units (9 million currency units at the budget
policy's billionths).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from proctor.errors import ConfigurationError, StoreError
from proctor.stores.base import EXPIRED_KEPT, LedgerSupport, Store, TokenBucketSupport
from proctor.stores.slot_queue import Grants, SlotQueueSupport

if TYPE_CHECKING:
    import redis as redis_module

__all__ = ["RedisStore"]

DEFAULT_TIMEOUT = 0.05
"""Seconds a store call waits for Redis before it raises ``StoreError``."""

_CONFLICTS = 1000  # reserve_if asks admit again at most this often while other callers change the ledger
_OPTIONS = ("timeout", "prefix", "clock", "slot_lease")
DEFAULT_SLOT_LEASE = 10.0
"""Seconds a scheduler's slot is leased for, renewed every third of it while the work runs."""
_BLOCK_MOST = 30.0  # the longest wait_for_grants blocks in one BLPOP
_UNITS = 1_000_000  # a waiting caller's weight travels in millionths: Qi sums stay exact integers
_SEPARATOR = re.compile(r"[:/]")


class _Script:
    """One Lua script: its text (with the shared helpers) and SHA; loaded on first use and after NOSCRIPT."""

    __slots__ = ("sha", "text")

    def __init__(self, *names: str) -> None:
        folder = resources.files("proctor.stores") / "lua"
        text = "\n".join((folder / f"{name}.lua").read_text(encoding="utf-8") for name in ("_common", *names))
        self.text = text.replace("__EXPIRED_KEPT__", repr(EXPIRED_KEPT))
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()


_scripts: dict[str, _Script] = {}


def _script(*names: str) -> _Script:
    key = "+".join(names)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = _Script(*names)
    return script


def _driver() -> ModuleType:
    try:
        return importlib.import_module("redis")
    except ImportError:
        raise ConfigurationError(
            "RedisStore needs proctor's 'redis' extra (the redis package is missing); in proctor's clone, "
            "pip install -e '.[redis]' (proctor is not on PyPI)"
        ) from None


class RedisStore(Store, LedgerSupport, TokenBucketSupport, SlotQueueSupport):
    """Ledgers, token buckets and fair slots in Redis: exact across every process and host sharing the server.

    Parameters:
        url: ``redis://[user:password@]host[:port][/db]`` or ``rediss://`` (TLS),
            with redis-py's own query options.
        timeout: seconds each call (and each connect) may take before it raises ``StoreError``.
        prefix: the first part of every key, so that several deployments share a server.
        clock: ``"server"`` (Redis ``TIME``) or ``"caller"`` (the ``now`` policies pass)
            for lease expiry and token refill.
        slot_lease: seconds a scheduler leases a slot for; it renews the lease every
            third of that while the work runs, so a holder killed with SIGKILL gives
            its slot back about this long after its last renewal.
    """

    SCHEME = "redis"
    blocking = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        prefix: str = "proctor",
        clock: Literal["server", "caller"] = "server",
        slot_lease: float = DEFAULT_SLOT_LEASE,
    ) -> None:
        if not (isinstance(slot_lease, (int, float)) and 0 < slot_lease < math.inf):
            raise ConfigurationError(f"slot_lease must be a number of seconds > 0, got {slot_lease!r}")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if clock not in ("server", "caller"):
            raise ConfigurationError(f"clock must be 'server' or 'caller', got {clock!r}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"prefix must be non-empty text without braces, got {prefix!r}")
        redis = _driver()
        retry, backoff = importlib.import_module("redis.retry"), importlib.import_module("redis.backoff")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(
                f"a Redis store URL starts with redis:// or rediss://, not {parts.scheme}://"
            )
        ours = sorted({name for name, _ in parse_qsl(parts.query)} & set(_OPTIONS))
        if ours:
            raise ConfigurationError(
                f"RedisStore(url) takes {', '.join(ours)} as keyword arguments; a URL with "
                f"?{ours[0]}= is read by RedisStore.from_url(url) (as PROCTOR_STORE and store= URLs are)"
            )
        self.timeout = float(timeout)
        self.prefix = prefix
        self.clock = clock
        self._where = f"Redis at {parts.hostname or 'localhost'}:{parts.port or 6379}"
        try:
            self._client: redis_module.Redis = redis.Redis.from_url(
                url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=retry.Retry(backoff.NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis store URL: {exc}") from None
        self._exceptions = redis.exceptions
        self._execute: Callable[..., Any] = self._client.execute_command
        self._keys: dict[str, tuple[str, str, str, str]] = {}
        # (ledger, window) -> (spent, reserved) as this store's last script left them: a hint only.
        self._seen: dict[tuple[str, int], tuple[int, int]] = {}
        self._reserve = _script("reserve")
        self._reserve_if = _script("reserve_if")
        self._settle = _script("settle")
        self._release = _script("release")
        self._spend = _script("spend")
        self._get = _script("get")
        self._clear = _script("clear")
        self._take = _script("_bucket", "take")
        self._refund = _script("_bucket", "refund")
        self._peek = _script("_bucket", "peek")
        self.slot_lease = float(slot_lease)
        self.member_lease = self.slot_lease
        self._slot_scripts = {
            name: _script("_slots", name)
            for name in (
                "slot_acquire",
                "slot_hand_over",
                "slot_renew",
                "slot_release",
                "slots_held",
                "slot_wait",
                "slot_withdraw",
                "slot_poll",
            )
        }
        self._slot_key_cache: dict[str, tuple[list[str], str]] = {}
        self._latest = -math.inf  # the latest now a caller gave (clock="caller"), for release_slot
        self._url = url
        self._blocking: Any = None  # the client of wait_for_grants
        self._blocking_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://host:6379/0`` or ``rediss://...``; ``?timeout=0.05``, ``?prefix=``, ``?clock=caller``."""
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in _OPTIONS:
                ours[name] = value
            else:
                theirs.append((name, value))
        try:
            timeout = float(ours.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ConfigurationError("timeout= in a Redis store URL must be a number of seconds") from None
        clock = ours.get("clock", "server")
        if clock not in ("server", "caller"):
            raise ConfigurationError("clock= in a Redis store URL must be server or caller")
        try:
            slot_lease = float(ours.get("slot_lease", DEFAULT_SLOT_LEASE))
        except ValueError:
            raise ConfigurationError("slot_lease= in a Redis store URL must be a number of seconds") from None
        rest = urlunsplit(parts._replace(query=urlencode(theirs)))
        return RedisStore(
            rest,
            timeout=timeout,
            prefix=ours.get("prefix", "proctor"),
            clock="caller" if clock == "caller" else "server",
            slot_lease=slot_lease,
        )

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self._client.close()
        with self._blocking_lock:
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()

    # Keys and calls.

    def _ledger_keys(self, key: str) -> tuple[str, str, str, str]:
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            base = f"{self.prefix}:{{{_tag(key)}}}:"
            found = self._keys[key] = (f"{base}L:{key}", f"{base}E:{key}", f"{base}A:{key}", f"{base}X:{key}")
        return found

    def _bucket_key(self, key: str) -> str:
        return f"{self.prefix}:{{{_tag(key)}}}:B:{key}"

    def _now(self, now: float) -> str:
        if self.clock == "server":
            return ""
        if now > self._latest:
            self._latest = now
        return repr(float(now))

    def _call(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run ``script`` by SHA, loading it when the server does not know it; errors as StoreError."""
        errors = self._exceptions
        try:
            try:
                return self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except errors.NoScriptError:
                self._execute("SCRIPT", "LOAD", script.text)
                return self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except errors.TimeoutError as exc:
            raise StoreError(
                f"{self._where} did not answer within {self.timeout:g}s: check that it is up and not "
                "overloaded, or raise the timeout (?timeout= in the store URL)",
                exc,
            ) from exc
        except errors.ConnectionError as exc:
            raise StoreError(
                f"cannot reach {self._where} ({exc}): start it, or fix the store URL (PROCTOR_STORE)", exc
            ) from exc
        except errors.ResponseError as exc:
            if str(exc).startswith("PROCTOR_CAPACITY "):
                raise ConfigurationError(
                    f"the resource has {str(exc).split()[1]} slots in {self._where} while in use; another "
                    "user asks for another capacity: give each capacity its own name"
                ) from None
            raise StoreError(f"{self._where} refused a store call: {exc}", exc) from exc
        except errors.RedisError as exc:
            raise StoreError(f"{self._where} refused a store call: {exc}", exc) from exc

    # Ledgers.

    def reserve(
        self, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
    ) -> tuple[int | None, int, int]:
        lease_id, spent, reserved = self._call(
            self._reserve,
            self._ledger_keys(key),
            (amount, "" if limit is None else limit, window, self._now(now), repr(float(lease))),
        )
        return lease_id, spent, reserved

    def reserve_if(
        self,
        ledgers: Sequence[tuple[str, int]],
        amount: int,
        now: float,
        lease: float,
        admit: Callable[[int, int], bool],
    ) -> list[int] | None:
        first, window = ledgers[0]
        keys = [name for key, _ in ledgers for name in self._ledger_keys(key)]
        at: tuple[str | int, ...] = (self._now(now), repr(float(lease)), *(w for _, w in ledgers))
        seen = self._seen.get((first, window))
        if seen is None:  # nothing seen yet: read the amounts (the script changes nothing)
            _, spent, reserved = self._call(self._reserve_if, keys, ("", "", "check", amount, *at))
            seen = (spent, reserved)
        for _ in range(_CONFLICTS):
            admitted = admit(*seen)
            act = "reserve" if admitted and amount else "check"
            done, spent, reserved, *ids = self._call(self._reserve_if, keys, (*seen, act, amount, *at))
            if done:
                self._note(first, window, spent, reserved + amount if act == "reserve" else reserved)
                return ids if admitted else None
            seen = (spent, reserved)  # another caller changed the ledger since: ask admit again
        raise StoreError(
            f"ledger {first!r} changed under every one of {_CONFLICTS} attempts to reserve on it: "
            "too many callers on one ledger at once"
        )

    def _note(self, key: str, window: int, spent: int, reserved: int) -> None:
        """Remember ``key``'s amounts in ``window`` as this store last left them: reserve_if's first guess."""
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key, window] = (spent, reserved)

    def settle(self, key: str, lease_id: int, actual: int, window: int) -> bool:
        after = self._call(self._settle, self._ledger_keys(key), (lease_id, actual, window))
        if not after:
            return False
        self._note(key, window, *after)
        return True

    def release(self, key: str, lease_id: int) -> None:
        self._call(self._release, self._ledger_keys(key), (lease_id,))

    def spend(self, key: str, amount: int, window: int) -> None:
        self._call(self._spend, self._ledger_keys(key)[:1], (amount, window))

    def get(self, key: str, window: int, now: float) -> tuple[int, int]:
        spent, reserved = self._call(self._get, self._ledger_keys(key), (window, self._now(now)))
        return spent, reserved

    def clear(self, key: str) -> None:
        self._call(self._clear, self._ledger_keys(key)[:1], ())

    def keys(self, prefix: str) -> Iterator[str]:
        pattern = f"{_glob(self.prefix)}:{{*}}:L:{_glob(prefix)}*"
        found: set[str] = set()
        try:
            for name in self._client.scan_iter(match=pattern, count=1000):
                text = name.decode() if isinstance(name, bytes) else str(name)
                found.add(text[text.index("}:L:") + 4 :])
        except self._exceptions.RedisError as exc:
            raise StoreError(f"listing ledgers in {self._where} failed: {exc}", exc) from exc
        return iter(sorted(found))

    # Token buckets.

    def take(self, key: str, tokens: float, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        ok, level = self._call(
            self._take,
            (self._bucket_key(key),),
            (repr(float(tokens)), repr(float(capacity)), repr(float(rate)), self._now(now)),
        )
        return bool(ok), float(level)

    def refund(self, key: str, tokens: float, capacity: float) -> None:
        self._call(self._refund, (self._bucket_key(key),), (repr(float(tokens)), repr(float(capacity))))

    def peek(self, key: str, capacity: float, rate: float, now: float) -> float:
        level = self._call(
            self._peek, (self._bucket_key(key),), (repr(float(capacity)), repr(float(rate)), self._now(now))
        )
        return float(level)

    # Slots of named resources, and the callers waiting for them (stores/lua/_slots.lua).

    def _slot_keys(self, resource: str) -> tuple[list[str], str]:
        """The seven keys of ``resource``'s slots and the base of its per-agent and per-member keys."""
        found = self._slot_key_cache.get(resource)
        if found is None:
            if len(self._slot_key_cache) > 10_000:
                self._slot_key_cache.clear()
            name = resource.replace("{", "(").replace("}", ")")
            base = f"{self.prefix}:{{{name}}}:slot:"
            found = self._slot_key_cache[resource] = ([base + part for part in "SHNGEQD"], base)
        return found

    def _slot(self, name: str, resource: str, now: float, lease: float, member: str, *args: Any) -> Any:
        keys, base = self._slot_keys(resource)
        timing = (self._now(now), "" if lease == math.inf else repr(float(lease)), member)
        return self._call(self._slot_scripts[name], keys, (base, *timing, *args))

    def acquire_slot(self, resource: str, capacity: int, holder: str, now: float, lease: float) -> int | None:
        token = self._slot("slot_acquire", resource, now, lease, "", capacity, holder)
        return None if token is None else int(token)

    def hand_over_slot(self, resource: str, token: int, holder: str, now: float, lease: float) -> int | None:
        passed = self._slot("slot_hand_over", resource, now, lease, "", token, holder)
        return None if passed is None else int(passed)

    def renew_slot(self, resource: str, token: int, now: float, lease: float) -> bool:
        (renewed,) = self._slot("slot_renew", resource, now, lease, "", token)
        return bool(renewed)

    def release_slot(self, resource: str, token: int) -> bool:
        # release_slot is given no time: the caller's clock is where its last call left it.
        latest = self._latest if self._latest > -math.inf else 0.0
        released, *_ = self._slot("slot_release", resource, latest, self.slot_lease, "", token)
        return bool(released)

    def slots_held(self, resource: str, now: float) -> int:
        return int(self._slot("slots_held", resource, now, self.slot_lease, ""))

    def wait_for_slot(
        self,
        resource: str,
        capacity: int,
        member: str,
        caller: int,
        agent: str,
        weight: float,
        alpha: float,
        now: float,
        lease: float,
    ) -> tuple[int | None, Grants]:
        token, *grants = self._slot(
            "slot_wait",
            resource,
            now,
            lease,
            member,
            capacity,
            repr(float(alpha)),
            repr(self.member_lease),
            caller,
            agent,
            _units(weight),
        )
        return (int(token) or None), _pairs(grants)

    def withdraw_slot_waiter(
        self, resource: str, member: str, caller: int, now: float, lease: float
    ) -> Grants:
        _, *grants = self._slot("slot_withdraw", resource, now, lease, member, caller)
        return _pairs(grants)

    def pass_slot(self, resource: str, member: str, token: int, now: float, lease: float) -> Grants:
        _, *grants = self._slot("slot_release", resource, now, lease, member, token)
        return _pairs(grants)

    def poll_slots(
        self,
        resource: str,
        member: str,
        held: Sequence[int],
        waiting: Sequence[tuple[int, str, float]],
        now: float,
        lease: float,
    ) -> tuple[list[bool], Grants, float | None]:
        callers = [part for caller, agent, weight in waiting for part in (caller, agent, _units(weight))]
        renewed, grants, expiry = self._slot(
            "slot_poll",
            resource,
            now,
            lease,
            member,
            repr(self.member_lease) if waiting else "",
            len(held),
            *held,
            *callers,
        )
        return [bool(flag) for flag in renewed], _pairs(grants), (float(expiry) if expiry else None)

    def wait_for_grants(self, resource: str, member: str, timeout: float) -> Grants:
        client = self._blocking
        if client is None:
            with self._blocking_lock:
                client = self._blocking
                if client is None:
                    # A client of its own, whose connections may block in BLPOP past the store's timeout
                    # (but not for ever: a server gone without closing the connection is found out).
                    client = self._blocking = _driver().Redis.from_url(
                        self._url, socket_connect_timeout=self.timeout, socket_timeout=_BLOCK_MOST + 1.0
                    )
        _, base = self._slot_keys(resource)
        key = f"{base}K:{member}"
        errors = self._exceptions
        try:
            # Redis >= 6 takes a fractional timeout; 0 would block for ever.
            popped = client.blpop([key], timeout=min(max(timeout, 0.001), _BLOCK_MOST))
            if popped is None:
                return []
            rest = client.lpop(key, 100) or []
        except errors.RedisError as exc:
            raise StoreError(f"waiting for slots in {self._where} failed: {exc}", exc) from exc
        grants = []
        for message in (popped[1], *rest):
            caller, token = message.split()
            grants.append((int(caller), int(token)))
        return grants


class _TLSRedisStore(RedisStore):
    """Registers ``rediss://`` (Redis over TLS); ``from_url`` builds a ``RedisStore``."""

    SCHEME = "rediss"


def _units(weight: float) -> int:
    """A waiting caller's weight in millionths."""
    return round(weight * _UNITS)


def _pairs(flat: Sequence[int]) -> Grants:
    """``[id, token, id, token, ...]`` as pairs."""
    return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


def _tag(key: str) -> str:
    """The hash tag of ``key``: its last part after ``:`` or ``/``, without braces."""
    tag = _SEPARATOR.split(key)[-1] or "_"
    return tag.replace("{", "(").replace("}", ")")


def _glob(text: str) -> str:
    """``text`` with Redis's glob characters escaped, for SCAN MATCH."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
