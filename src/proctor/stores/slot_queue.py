"""SlotQueueSupport: the callers waiting for a resource's slots kept in the store, fair across processes.

``SlotLeaseSupport`` only counts slots, so each scheduler chooses among its
own waiters. A store that also serves ``SlotQueueSupport`` keeps the waiting
callers of every process that uses a resource name, with their agent and
weight, and gives each slot that comes free to the caller with the highest
L(i) among all of them, in the same atomic step that frees it. The caller's
process learns of the grant from the step's result when it made the step,
else from ``wait_for_grants``, which blocks until a grant comes (one wake-up,
no polling). A process calls ``poll_slots`` now and then: it says it is alive
(its callers are forgotten when it stops), renews its leases, and collects
grants. Callers are named by ``(member, id)``: ``member`` is the id of one
scheduler in one process (a random text, new after a fork), ``id`` an integer
it chooses.

A grant is a ``(id, token)`` pair: caller ``id`` of this process holds lease
``token`` from the moment of the grant, and must pass it on (``pass_slot``)
when it turns out to be gone.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from proctor.stores.base import SlotLeaseSupport

__all__ = ["Grants", "SlotQueueSupport"]

Grants = list[tuple[int, int]]
"""Slots granted to this process's waiting callers: ``(caller id, fencing token)`` pairs."""


class SlotQueueSupport(SlotLeaseSupport):
    """Fair waiting for the slots of named resources, across every process that shares the store."""

    member_lease: float = 10.0
    """Seconds a process's waiting callers stay queued without a ``poll_slots`` from it."""

    @abstractmethod
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
        """A slot of ``resource`` now if one is free and no one waits, else a place in its queue.

        :param caller: the caller's id in this process, new for each request.
        :param agent: whose request it is; L(i) is computed per agent.
        :param weight: what the request weighs in its agent's Qi.
        :param alpha: the weight of Qi against waiting time in L(i).
        :returns: the token of the slot taken (None: queued, a grant will
            come), and grants made meanwhile to this process's other callers.
        """

    @abstractmethod
    def withdraw_slot_waiter(
        self, resource: str, member: str, caller: int, now: float, lease: float
    ) -> Grants:
        """Caller ``caller`` gives up: out of the queue, or its slot, if granted meanwhile, passed on.

        :returns: grants to this process's callers that the step made.
        """

    @abstractmethod
    def pass_slot(self, resource: str, member: str, token: int, now: float, lease: float) -> Grants:
        """Give back lease ``token`` (if it lives), its slot to the best waiting caller of any process.

        :returns: grants to this process's callers that the step made.
        """

    @abstractmethod
    def poll_slots(
        self,
        resource: str,
        member: str,
        held: Sequence[int],
        waiting: Sequence[tuple[int, str, float]],
        now: float,
        lease: float,
    ) -> tuple[list[bool], Grants, float | None]:
        """This process is alive: renew its leases ``held``, keep its callers ``waiting`` queued.

        :param held: the tokens of the leases this process holds.
        :param waiting: ``(id, agent, weight)`` of each caller waiting in this
            process; one the queue lost (a failover) is queued again.
        :returns: whether each lease of ``held`` lived (and is renewed),
            the grants made to this process's callers since they were last
            collected, and the seconds until the earliest lease of any
            process expires (None if none does).
        """

    @abstractmethod
    def wait_for_grants(self, resource: str, member: str, timeout: float) -> Grants:
        """Block until a slot is granted to one of this process's callers, or ``timeout`` seconds pass.

        Called by one thread per member; returns the grants, or
        an empty list at the timeout.
        """
