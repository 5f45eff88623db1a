"""PolicySource: the rules a decorator enforces, reloaded when their files change.

Files are checked at most every ``interval`` seconds, on the next call after
that (a stat per file, no thread). A file that changed and fails to load is
reported once through ``logging`` and the rules in force stay in force.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from proctor.errors import ConfigurationError, PolicyConfigError
from proctor.rules.compiler import PIIScan
from proctor.rules.loader import load_policies, parse_policies
from proctor.rules.ruleset import CompiledRule, RuleSet

__all__ = ["PolicySource", "PolicySpec"]

logger = logging.getLogger("proctor.rules")

PolicySpec: TypeAlias = (
    "str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any] | RuleSet"
)
"""What ``@runlog(policies=...)`` accepts: a path, a list of paths, a parsed mapping, or a RuleSet."""


class PolicySource:
    """Holds the current ``RuleSet`` of some policy files, a mapping, or a given ``RuleSet``.

    Loading fails at construction (``PolicyConfigError``) so a decorator never
    starts without its rules; later reloads that fail keep the previous rules.
    """

    def __init__(self, spec: PolicySpec, *, pii: PIIScan | None = None, interval: float = 0.5) -> None:
        self._pii = pii
        self._interval = interval
        self._lock = threading.Lock()
        self._paths: tuple[Path, ...] = ()
        self._stamps: tuple[tuple[int, int] | None, ...] = ()
        self._next_check = 0.0
        if isinstance(spec, RuleSet):
            self._rules = spec
        elif isinstance(spec, Mapping):
            self._rules = parse_policies(spec, "<policies>", pii=pii)
        else:
            items = [spec] if isinstance(spec, (str, os.PathLike)) else _paths_in(spec)
            self._paths = tuple(Path(item) for item in items)
            self._stamps = self._stat()
            self._rules = self._load()
            self._next_check = time.monotonic() + interval

    @property
    def paths(self) -> tuple[Path, ...]:
        """The files the rules come from; empty for a mapping or a RuleSet."""
        return self._paths

    def current(self) -> RuleSet:
        """The rules in force, after reloading files that changed since the last check."""
        if self._paths and time.monotonic() >= self._next_check:
            self._maybe_reload()
        return self._rules

    def _maybe_reload(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; use the rules in force meanwhile
        try:
            self._next_check = time.monotonic() + self._interval
            stamps = self._stat()
            if stamps == self._stamps:
                return
            self._stamps = stamps
            try:
                self._rules = self._load()
            except PolicyConfigError as exc:
                logger.error("policy file change not applied; the previous rules stay in force:\n%s", exc)
            else:
                logger.info("policies reloaded from %s", ", ".join(map(str, self._paths)))
        finally:
            self._lock.release()

    def _stat(self) -> tuple[tuple[int, int] | None, ...]:
        stamps: list[tuple[int, int] | None] = []
        for path in self._paths:
            try:
                stat = path.stat()
            except OSError:
                stamps.append(None)
            else:
                stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def _load(self) -> RuleSet:
        sets = [load_policies(path, pii=self._pii) for path in self._paths]
        if len(sets) == 1:
            return sets[0]
        return _merge(sets)


def _merge(sets: list[RuleSet]) -> RuleSet:
    """One rule set from several files: file order, then rule order; ids unique, defaults the same."""
    rules: list[CompiledRule] = []
    owners: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    first = sets[0]
    for ruleset in sets[1:]:
        if ruleset.defaults != first.defaults:
            problems.append(
                (
                    f"{ruleset.source}:1:1",
                    f"its defaults ({ruleset.defaults.model_dump(exclude_defaults=True)}) differ from "
                    f"those of {first.source} ({first.defaults.model_dump(exclude_defaults=True)}); "
                    "files used together must agree on defaults",
                )
            )
    for ruleset in sets:
        every = (*ruleset.rules, *(ruleset.after.rules if ruleset.after is not None else ()))
        for compiled in sorted(every, key=lambda c: c.index):
            rule_id = compiled.rule.id
            if rule_id in owners:
                problems.append(
                    (f"{ruleset.source}:1:1", f"rule id {rule_id!r} is also used in {owners[rule_id]}")
                )
                continue
            owners[rule_id] = ruleset.source
            rules.append(CompiledRule(compiled.rule, len(rules), compiled.condition, compiled.keyed))
    if problems:
        raise PolicyConfigError(problems)
    costs: dict[str, float] = {}
    for ruleset in sets:  # the first file that prices a tool glob decides its cost
        for tool, amount in ruleset.costs.items():
            costs.setdefault(tool, amount)
    return RuleSet(rules, sets[0].defaults, " + ".join(ruleset.source for ruleset in sets), costs=costs)


def _paths_in(spec: object) -> list[str | os.PathLike[str]]:
    """The policy file paths of a list given as policies; ``ConfigurationError`` for anything else."""
    items = list(spec) if isinstance(spec, (list, tuple)) else None
    if items is None or not all(isinstance(item, (str, os.PathLike)) for item in items):
        raise ConfigurationError(
            "policies= takes a policy file path, a list of paths, a parsed mapping (a dict with a "
            f"'policies' list), a RuleSet or a PolicyEnforcer; got {type(spec).__name__} {spec!r}"
        )
    return items
