"""Shared by the run log tests: recording into a log of the test's own, policy files in tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

from proctor.runs import RunLog, default


def recording_into(log: RunLog) -> Iterator[RunLog]:
    """Record new runs in ``log`` while the fixture lasts; then restore the choice before and close it."""
    try:
        with default.recording_into(log):
            yield log
    finally:
        log.close()


def policy_file(tmp_path: Path, text: str, name: str = "policies.yaml") -> str:
    """Write a policy file (YAML, dedented) in ``tmp_path``; returns its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)
