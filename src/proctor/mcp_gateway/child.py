"""The upstream server of the stdio gateway: a child process on two pipes, started and stopped here."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["spawn", "stop"]

_GRACE = 2.0
"""Seconds the server gets to exit once its stdin is closed, and again after SIGTERM."""


def spawn(command: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the server ``command args`` with pipes for stdin and stdout; its stderr is the gateway's.

    ``OSError`` (with what to do) when the command cannot be started.
    """
    try:
        return subprocess.Popen(
            [command, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            env={**os.environ, **env} if env else None,
            bufsize=0,
        )
    except OSError as exc:
        raise OSError(
            f"cannot start the MCP server {command!r}: {exc.strerror or exc}; check the command"
        ) from None


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the server: close its stdin (MCP's way to ask it to exit), then SIGTERM, then SIGKILL."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    for signal in (None, process.terminate, process.kill):
        if signal is not None:
            with contextlib.suppress(OSError):
                signal()
        try:
            process.wait(_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue
