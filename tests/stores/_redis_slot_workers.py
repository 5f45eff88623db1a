"""The worker processes of test_redis_slots.py: schedulers on one Redis resource name, in other processes."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

from proctor import SharedResource, Task
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler
from proctor.stores import RedisStore


def wait_heavy(url: str, name: str, folder: str) -> None:
    """Write ``started``; once ``go`` exists, queue one heavy task (weight 5) for agent "heavy", and
    write ``ready`` once queued, ``granted`` once granted (files in ``folder``)."""
    scheduler = LOCOScheduler(None, SharedResource(name, 1, store=RedisStore.from_url(url)), alpha=0.5)
    scheduler.release_handle(scheduler.acquire_start("warm-up"))  # the store's scripts and connections
    Path(folder, "started").touch()
    ready_path, granted_path = str(Path(folder, "ready")), str(Path(folder, "granted"))
    while not Path(folder, "go").exists():
        time.sleep(0.002)
    waiting = threading.Thread(target=lambda: _take_heavy(scheduler, granted_path))
    waiting.start()
    while scheduler.resource.waiter_count < 1:
        time.sleep(0.005)
    Path(ready_path).write_text("queued")
    waiting.join()


def _take_heavy(scheduler: LOCOScheduler, granted_path: str) -> None:
    with scheduler.acquire("heavy", Task(weight=5.0), timeout=60):
        Path(granted_path).write_text("granted")
        time.sleep(0.2)  # hold it a moment: the other process's waiter must still wait meanwhile


def hold_and_hang(url: str, name: str, ready_path: str) -> None:
    """Take the only slot, say so, and hang holding it (renewed) until killed with SIGKILL."""
    scheduler = LOCOScheduler(None, SharedResource(name, 1, store=RedisStore.from_url(url)))
    scheduler.acquire_start("holder")
    Path(ready_path).write_text("holding")
    time.sleep(600)


def churn(url: str, name: str, capacity: int, seconds: float, out_path: str) -> None:
    """Once ``<out_path>.go`` exists, three threads take and give back slots for ``seconds``; then
    write every fencing token granted here to ``out_path``."""
    scheduler = LOCOScheduler(None, SharedResource(name, capacity, store=RedisStore.from_url(url)))
    assert scheduler._shared is not None
    Path(out_path + ".member").write_text(scheduler._shared.member)  # who it is in the store's keys
    tokens: list[int] = []
    lock = threading.Lock()
    while not Path(out_path + ".go").exists():
        time.sleep(0.002)
    end = time.monotonic() + seconds

    def work(agent: str) -> None:
        rng = random.Random(agent)
        while time.monotonic() < end:
            with scheduler.acquire(agent, Task(weight=rng.choice([1.0, 2.0])), timeout=30) as grant:
                with lock:
                    tokens.append(grant.fencing_token)
                time.sleep(rng.uniform(0.001, 0.01))

    threads = [threading.Thread(target=work, args=(f"{out_path[-6:]}-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scheduler.shutdown(10)
    Path(out_path).write_text("\n".join(map(str, sorted(tokens))) + "\n")


def churn_async(url: str, name: str, capacity: int, seconds: float, out_path: str) -> None:
    """``churn`` with three asyncio tasks on an ``AsyncLOCOScheduler``."""
    asyncio.run(_churn_async(url, name, capacity, seconds, out_path))


async def _churn_async(url: str, name: str, capacity: int, seconds: float, out_path: str) -> None:
    scheduler = AsyncLOCOScheduler(None, SharedResource(name, capacity, store=RedisStore.from_url(url)))
    assert scheduler._shared is not None
    Path(out_path + ".member").write_text(scheduler._shared.member)
    tokens: list[int] = []
    while not Path(out_path + ".go").exists():
        await asyncio.sleep(0.002)
    end = time.monotonic() + seconds

    async def work(agent: str) -> None:
        rng = random.Random(agent)
        while time.monotonic() < end:
            async with scheduler.acquire(agent, Task(weight=rng.choice([1.0, 2.0])), timeout=30) as grant:
                tokens.append(grant.fencing_token)
                await asyncio.sleep(rng.uniform(0.001, 0.01))

    await asyncio.gather(*(work(f"{out_path[-6:]}-{n}") for n in range(3)))
    await scheduler.shutdown(10)
    Path(out_path).write_text("\n".join(map(str, sorted(tokens))) + "\n")
