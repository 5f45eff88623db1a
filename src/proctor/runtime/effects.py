"""The clock, uuids and random numbers of a run, recorded so that a replay sees the same values.

Inside a recorded run, ``now()``, ``uuid4()`` and ``rng()`` record what they
return; inside a replay they return the recorded values in the same order.
Outside any run they are ``datetime.now``, ``uuid.uuid4`` and the ``random``
module's own generator. Code that calls ``time.time()``, ``datetime.now()``,
``uuid.uuid4()`` or the ``random`` module directly is not captured.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid as _uuid
from datetime import datetime, tzinfo

from proctor.runtime.context import active
from proctor.runtime.run import WatchedRun

__all__ = ["now", "rng", "uuid4"]

_outside = random.Random()


def now(tz: tzinfo | None = None) -> datetime:
    """The current time, as ``datetime.now(tz)``; recorded in a run, replayed in a replay."""
    frame = active.get()
    run = frame.run if frame is not None else None
    if not isinstance(run, WatchedRun):
        return datetime.now(tz)
    stamp = run.replay.effect("now") if run.replay is not None else None
    if stamp is None:
        stamp = time.time()
    if run.log is not None:
        run._effect("now", stamp)
    return datetime.fromtimestamp(stamp, tz)


def uuid4() -> _uuid.UUID:
    """A random UUID, as ``uuid.uuid4()``; recorded in a run, replayed in a replay."""
    frame = active.get()
    run = frame.run if frame is not None else None
    if not isinstance(run, WatchedRun):
        return _uuid.uuid4()
    recorded = run.replay.effect("uuid") if run.replay is not None else None
    value = _uuid.UUID(recorded) if isinstance(recorded, str) else _uuid.uuid4()
    if run.log is not None:
        run._effect("uuid", str(value))
    return value


def rng() -> random.Random:
    """The run's own random generator, seeded once per run (the seed is recorded and replayed).

    Outside a run: one generator shared by the process, seeded from the system.
    """
    frame = active.get()
    if frame is None:
        return _outside
    run = frame.run
    generator: random.Random | None = getattr(run, "_rng", None)
    if generator is None:
        with run._lock:
            generator = getattr(run, "_rng", None)
            if generator is None:
                seed = run.replay.effect("seed") if run.replay is not None else None
                if not isinstance(seed, int):
                    seed = secrets.randbits(64)
                if isinstance(run, WatchedRun) and run.log is not None:
                    if run.effects is None:
                        run.effects = {}
                    run.effects["seed"] = seed
                generator = run._rng = random.Random(seed)
    return generator
