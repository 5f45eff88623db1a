"""What every benchmark prints the same way: the machine, number formats, and the targets table."""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

import proctor

__all__ = [
    "Target",
    "fmt",
    "git_revision",
    "machine_lines",
    "percentile_us",
    "positive",
    "ratio",
    "status",
    "targets_table",
    "time_empty",
]


@dataclass(slots=True)
class Target:
    """One row of the targets table: a requirement, the measured figure, and whether it holds."""

    what: str
    required: str
    measured: str
    context: str
    passed: bool | None  # None: not measured, or for information
    note: str = ""


def targets_table(rows: Sequence[Target]) -> Table:
    table = Table(title="Targets (the issue's; rows marked info are not targets)", title_justify="left")
    table.add_column("what")
    table.add_column("required")
    table.add_column("measured", justify="right")
    table.add_column("for comparison", style="dim")
    table.add_column("result")
    for row in rows:
        table.add_row(row.what, row.required, row.measured, row.context, _verdict(row.passed, row.note))
    return table


def _verdict(passed: bool | None, note: str) -> str:
    if passed is None:
        return f"[yellow]{note or 'SKIP'}[/yellow]"
    return "[green]PASS[/green]" if passed else "[red]FAIL[/red]"


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    """``value`` formatted, or "-" when it was not measured."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return a / b if a is not None and b else None


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def git_revision() -> str:
    """The checkout's commit, and whether the working tree differs from it; '' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"git {head}" + (" with uncommitted changes" if dirty else "")


def machine_lines(peers: Mapping[str, str | None]) -> list[str]:
    """The machine, the Python, proctor's revision and each peer's version (None: not installed)."""
    cpus = os.cpu_count()
    usable: int | None = cpus
    if hasattr(os, "sched_getaffinity"):  # not on every platform
        usable = len(os.sched_getaffinity(0))
    load = ""
    if hasattr(os, "getloadavg"):
        load = "; load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    revision = git_revision()
    versions = "".join(f"; {name}: {version or 'not installed'}" for name, version in peers.items())
    return [
        f"machine: {platform.platform()}, {platform.machine()}, {cpus} CPUs ({usable} usable){load}",
        f"python:  {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"proctor: {proctor.__version__}{f' ({revision})' if revision else ''}{versions}",
    ]


@contextmanager
def status(console: Console, message: str) -> Iterator[Callable[[str], None]]:
    """A spinner with ``message``; the yielded function adds what is running now."""
    with console.status(message) as spinner:
        yield lambda text: spinner.update(f"{message}: {text}")


def time_empty(count: int) -> list[int]:
    """Nanoseconds of an empty timed region: what the two clock reads add to each sample."""
    clock = time.perf_counter_ns
    samples = [0] * count
    for i in range(count):
        start = clock()
        samples[i] = clock() - start
    return samples


def percentile_us(samples: Sequence[int], q: float) -> float:
    """The ``q`` quantile (nearest rank) of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1000.0
