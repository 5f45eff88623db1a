"""``proctor mcp wrap``: put every server of a client's ``mcpServers`` configuration behind the gateway.

Claude Desktop's format (Cursor's, Claude Code's ``.mcp.json`` and others use
the same)::

    {"mcpServers": {"filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
     "/Users/me/Desktop"], "env": {...}}}}

Each server started by a command becomes ``proctor mcp proxy --policies FILE
--server NAME --db DB -- COMMAND ARGS...``; its ``env`` and other keys stay.
Servers already wrapped are left as they are, so wrapping twice changes
nothing; ``unwrap`` gives back the original entries. Servers reached by URL
are left alone (the stdio gateway needs a command to start).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proctor.errors import ConfigurationError

__all__ = ["WrapResult", "proctor_command", "unwrap_config", "wrap_config", "write_config"]

_MARK = ["mcp", "proxy"]


@dataclass
class WrapResult:
    """The new configuration, the servers changed, the ones skipped (with why), and the diff."""

    config: dict[str, Any]
    changed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    diff: str = ""


def proctor_command() -> str:
    """The absolute path of the ``proctor`` command (clients do not start commands through a shell)."""
    found = shutil.which("proctor")
    if found is not None:
        return os.path.abspath(found)
    beside = Path(sys.executable).with_name("proctor")
    return str(beside)


def _servers(config: Any, path: Path) -> dict[str, Any]:
    if not isinstance(config, dict) or not isinstance(config.get("mcpServers"), dict):
        raise ConfigurationError(
            f"{path}: no 'mcpServers' object at the top; this is not an MCP client configuration "
            "(Claude Desktop's is claude_desktop_config.json)"
        )
    servers: dict[str, Any] = config["mcpServers"]
    return servers


def _wrapped(entry: Mapping[str, Any]) -> bool:
    args = entry.get("args")
    return (
        isinstance(args, list)
        and args[:2] == _MARK
        and "--" in args
        and Path(str(entry.get("command", ""))).name.startswith("proctor")
    )


def load_config(path: Path) -> dict[str, Any]:
    """The configuration at ``path``; ``ConfigurationError`` saying what is wrong with it."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    _servers(config, path)
    return dict(config)


def wrap_config(
    path: Path,
    policies: Path,
    *,
    db: str | None = None,
    service: str | None = None,
    command: str | None = None,
) -> WrapResult:
    """The configuration at ``path`` with every command server behind ``proctor mcp proxy``."""
    original = load_config(path)
    config = copy.deepcopy(original)
    result = WrapResult(config)
    proctor = command or proctor_command()
    for name, entry in _servers(config, path).items():
        if not isinstance(entry, dict):
            result.skipped[name] = "not an object"
        elif _wrapped(entry):
            result.skipped[name] = "already goes through the gateway"
        elif not isinstance(entry.get("command"), str):
            result.skipped[name] = "reached by URL, not started by a command"
        else:
            args = entry.get("args") or []
            options = ["--policies", str(policies.resolve()), "--server", name]
            if db is not None:
                options += ["--db", db]
            if service is not None:
                options += ["--service", service]
            entry["args"] = [*_MARK, *options, "--", entry["command"], *map(str, args)]
            entry["command"] = proctor
            result.changed.append(name)
    result.diff = _diff(original, config, path)
    return result


def unwrap_config(path: Path) -> WrapResult:
    """The configuration at ``path`` with every wrapped server started directly again."""
    original = load_config(path)
    config = copy.deepcopy(original)
    result = WrapResult(config)
    for name, entry in _servers(config, path).items():
        if isinstance(entry, dict) and _wrapped(entry):
            args = entry["args"]
            inner = args[args.index("--") + 1 :]
            entry["command"], entry["args"] = inner[0], inner[1:]
            result.changed.append(name)
    result.diff = _diff(original, config, path)
    return result


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` to ``path`` after copying the file as it was to a backup; returns the backup."""
    backup = path.with_name(path.name + ".bak")
    if backup.exists():
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.copy2(path, backup)
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    temporary = path.with_name(path.name + ".proctor-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)  # a client reading the file meanwhile sees the old one or the new one
    return backup


def _diff(before: Mapping[str, Any], after: Mapping[str, Any], path: Path) -> str:
    old = json.dumps(before, indent=2, ensure_ascii=False).splitlines(keepends=True)
    new = json.dumps(after, indent=2, ensure_ascii=False).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"{path} (before)", f"{path} (after)"))
