"""CallThread: blocking calls made in one thread, in order, reported to the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from proctor.scheduling._worker import CallThread

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_calls_run_in_one_other_thread_in_order_with_the_callers_context() -> None:
    made: list[tuple[int, int, str]] = []

    def call(n: int) -> int:
        made.append((n, threading.get_ident(), who.get()))
        return n * 10

    async def main() -> list[int]:
        thread = CallThread("test-calls")
        who.set("caller")
        futures = [thread.submit(call, n) for n in range(20)]
        return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == [n * 10 for n in range(20)]
    assert [n for n, _, _ in made] == list(range(20))
    threads = {thread for _, thread, _ in made}
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    assert {name for _, _, name in made} == {"caller"}


def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    def fail() -> None:
        raise LookupError("no such ledger")

    async def main() -> None:
        thread = CallThread("test-calls")
        with pytest.raises(LookupError, match="no such ledger"):
            await thread.submit(fail)
        assert await thread.submit(len, "abc") == 3

    asyncio.run(main())


def test_a_closed_thread_finishes_its_calls_and_a_later_call_starts_another() -> None:
    gate = threading.Event()

    async def main() -> None:
        thread = CallThread("test-calls")
        waiting = thread.submit(gate.wait, 10)
        thread.close()
        gate.set()
        assert await waiting is True
        assert await thread.submit(len, "ab") == 2

    asyncio.run(main())
