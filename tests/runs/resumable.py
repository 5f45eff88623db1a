"""A job for the resume tests: five steps, each noting that it ran in a file; step 3 can hang."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import proctor
from proctor import runlog


def _note(text: str) -> None:
    with Path(os.environ["RESUME_NOTES"]).open("a") as notes:
        notes.write(text + "\n")


@runlog(service="resume-test", name="step", cost=0.01)
def step(n: int) -> int:
    _note(f"step {n}")
    if n == 3 and os.environ.get("RESUME_HANG"):
        proctor.flush()  # steps 1 and 2 are in the run log
        print("hanging", flush=True)
        time.sleep(120)
    return n * 10


@runlog(service="resume-test", name="job")
def job(count: int) -> list[int]:
    ticket = proctor.uuid4().hex[:8]
    _note(f"ticket {ticket}")
    return [step(i) for i in range(1, count + 1)]


if __name__ == "__main__":
    job(int(sys.argv[1]))
