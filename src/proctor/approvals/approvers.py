"""Approvers: who may decide approval requests, read from an ``approvers.yaml`` file.

```yaml
groups:
  dba: {webhook: "http://127.0.0.1:9000/hook"}   # optional, per group
people:
  alice: {groups: [dba, oncall], token: "sha256:<hex of sha256(token)>"}
```

Tokens are stored only as their SHA-256 hash; ``Approvers.add`` issues them, ``Approvers.remove``
takes a person out of groups or out of the file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proctor.errors import ConfigurationError

__all__ = ["DEFAULT_FILE", "Approvers", "Person", "approvers_path", "hash_token"]

DEFAULT_FILE = "approvers.yaml"
"""The approvers file looked for in the working folder when ``$PROCTOR_APPROVERS`` is not set."""

_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_HEADER = (
    "# proctor approvers: who may decide approval requests. Tokens are kept only as hashes.\n"
    "# `proctor approvers add NAME --group GROUP` and `proctor approvers remove NAME` rewrite this file\n"
    "# (comments are not kept).\n"
)


@dataclass(frozen=True, slots=True)
class Person:
    """One approver: a name, the groups they decide for, and the hash of their token (None: no token)."""

    name: str
    groups: frozenset[str]
    token: str | None = None


def approvers_path() -> Path | None:
    """The approvers file in force: ``$PROCTOR_APPROVERS``, else ``./approvers.yaml`` when it exists.

    None means open mode: no approvers file, one local user who says who they are.
    """
    configured = os.environ.get("PROCTOR_APPROVERS")
    if configured:
        return Path(configured)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def hash_token(token: str) -> str:
    """The form a token is stored in: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Approvers:
    """The people who may decide approval requests, their groups and tokens, and each group's webhook.

    Parameters:
        groups: group name to its webhook URL (None: no webhook). Groups that
            people name need not be listed.
        people: the approvers.
        path: the file these came from, which ``add`` rewrites.
    """

    def __init__(
        self,
        groups: Mapping[str, str | None] | None = None,
        people: Iterable[Person] = (),
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._webhooks = dict(groups or {})
        self._people = {person.name: person for person in people}
        self.path = None if path is None else Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Approvers:
        """The approvers in the YAML file at ``path``; ``ConfigurationError`` saying what is wrong."""
        return cls.from_mapping(_read(Path(path)), path=path)

    @classmethod
    def from_mapping(cls, data: Any, *, path: str | os.PathLike[str] | None = None) -> Approvers:
        """The approvers in ``data`` (the parsed file: ``groups`` and ``people``); checked like ``load``."""
        where = str(path) if path is not None else "approvers"
        problems: list[str] = []
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where}: expected a mapping with `groups:` and `people:`")
        for key in data:
            if key not in ("groups", "people"):
                problems.append(f"unknown key {key!r}; an approvers file has `groups:` and `people:`")
        groups = _groups(data.get("groups"), problems)
        people = _people(data.get("people"), problems)
        if problems:
            listed = "\n".join(f"  {problem}" for problem in problems)
            raise ConfigurationError(f"{where} is not a valid approvers file:\n{listed}")
        return cls(groups, people, path=path)

    @property
    def groups(self) -> list[str]:
        """Every group, listed under ``groups:`` or named by a person, sorted."""
        named = {group for person in self._people.values() for group in person.groups}
        return sorted(named.union(self._webhooks))

    @property
    def people(self) -> Mapping[str, Person]:
        """Every approver by name."""
        return self._people

    def who(self, token: str) -> str | None:
        """The name of the person whose token this is; None when it is nobody's."""
        digest = hash_token(token)
        found = None
        for person in self._people.values():  # every hash compared, in constant time
            if person.token is not None and hmac.compare_digest(person.token, digest):
                found = person.name
        return found

    def may_decide(self, person: str, groups: Iterable[str]) -> bool:
        """Whether ``person`` may decide a request for ``groups`` (no groups: any listed person may)."""
        return self.refusal(person, groups) is None

    def refusal(self, person: str, groups: Iterable[str]) -> str | None:
        """Why ``person`` may not decide a request for ``groups``, in words; None when they may."""
        wanted = sorted(set(groups))
        found = self._people.get(person)
        if found is None:
            where = f" in {self.path}" if self.path is not None else ""
            return f"{person} is not a listed approver{where}"
        if not wanted or found.groups.intersection(wanted):
            return None
        if len(wanted) == 1:
            return f"{person} is not in group {wanted[0]}"
        return f"{person} is not in any of the groups {', '.join(wanted)}"

    def members(self, group: str) -> list[str]:
        """The names of the people in ``group``, sorted."""
        return sorted(person.name for person in self._people.values() if group in person.groups)

    def webhook(self, group: str) -> str | None:
        """The URL that new requests for ``group`` are posted to; None when it has none."""
        return self._webhooks.get(group)

    def add(self, name: str, groups: Iterable[str]) -> str:
        """Give ``name`` exactly these groups and a new token; returns the token, which is not kept.

        When there is a ``path``, the file is rewritten with the change and
        every other entry kept (a new file is readable by its owner only).
        An earlier token of ``name`` stops working.
        """
        chosen = list(dict.fromkeys(groups))
        bad = [value for value in (name, *chosen) if not _is_name(value)]
        if bad:
            raise ConfigurationError(
                f"{bad[0]!r} is not a valid name: names of people and groups are non-empty text "
                "without spaces at either end"
            )
        token = secrets.token_urlsafe(32)
        person = Person(name, frozenset(chosen), hash_token(token))
        if self.path is not None:
            # Re-read the file, so that entries changed since it was loaded are kept too.
            data = _read(self.path) if self.path.exists() else None
            current = Approvers.from_mapping(data, path=self.path)  # an invalid file is left alone
            data = data or {}
            defined = dict(data.get("groups") or {})
            for group in chosen:
                defined.setdefault(group, {})
            people = dict(data.get("people") or {})
            people[name] = {"groups": chosen, "token": person.token}
            _write(self.path, {"groups": defined, "people": people})
            self._webhooks = dict(current._webhooks)
            self._people = dict(current._people)
        for group in chosen:
            self._webhooks.setdefault(group, None)
        self._people[name] = person
        return token

    def remove(self, name: str, groups: Iterable[str] = ()) -> Person | None:
        """Take ``name`` out of ``groups`` (keeping their token), or out of the file when none are given.

        Returns the person after the change; None when they were removed. ``ConfigurationError``
        when ``name`` is not listed or not in one of ``groups``. With a ``path``, the file is
        rewritten with every other entry kept, as ``add`` does; groups stay defined.
        """
        leaving = list(dict.fromkeys(groups))
        data: Any = None
        if self.path is not None:
            # Re-read the file, so that entries changed since it was loaded are kept too.
            data = _read(self.path) if self.path.exists() else None
            current = Approvers.from_mapping(data, path=self.path)  # an invalid file is left alone
            self._webhooks = dict(current._webhooks)
            self._people = dict(current._people)
        person = self._people.get(name)
        if person is None:
            where = f" in {self.path}" if self.path is not None else ""
            listed = ", ".join(sorted(self._people)) or "nobody"
            raise ConfigurationError(f"{name} is not listed{where}; listed: {listed}")
        outside = [group for group in leaving if group not in person.groups]
        if outside:
            held = ", ".join(sorted(person.groups)) or "none"
            raise ConfigurationError(f"{name} is not in group {outside[0]}; {name}'s groups: {held}")
        changed = Person(name, person.groups.difference(leaving), person.token) if leaving else None
        if self.path is not None:
            data = dict(data or {})
            people = dict(data.get("people") or {})
            if changed is None:
                del people[name]
            else:
                entry = dict(people[name] or {})
                entry["groups"] = [group for group in entry.get("groups") or [] if group not in leaving]
                people[name] = entry
            data["people"] = people
            _write(self.path, data)
        if changed is None:
            del self._people[name]
        else:
            self._people[name] = changed
        return changed

    def __repr__(self) -> str:
        return f"Approvers(people={sorted(self._people)!r}, path={self.path!r})"


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value) and value == value.strip()


def _groups(value: Any, problems: list[str]) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append("groups: expected a mapping of group names to their settings")
        return {}
    groups: dict[str, str | None] = {}
    for name, settings in value.items():
        if not _is_name(name):
            problems.append(f"groups: {name!r} is not a valid group name")
            continue
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            problems.append(f"groups.{name}: expected a mapping such as {{webhook: URL}} or {{}}")
            continue
        for key in settings:
            if key != "webhook":
                problems.append(f"groups.{name}: unknown key {key!r}; a group has only `webhook:`")
        webhook = settings.get("webhook")
        if webhook is not None and not (
            isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
        ):
            problems.append(f"groups.{name}.webhook: expected an http:// or https:// URL, got {webhook!r}")
            webhook = None
        groups[name] = webhook
    return groups


def _people(value: Any, problems: list[str]) -> list[Person]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        problems.append("people: expected a mapping of names to {groups: [...], token: ...}")
        return []
    people: list[Person] = []
    for name, entry in value.items():
        if not _is_name(name):
            problems.append(f"people: {name!r} is not a valid name")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"people.{name}: expected a mapping such as {{groups: [dba], token: ...}}")
            continue
        for key in entry:
            if key not in ("groups", "token"):
                problems.append(f"people.{name}: unknown key {key!r}; a person has `groups:` and `token:`")
        groups = entry.get("groups") or []
        if not isinstance(groups, list) or not all(_is_name(group) for group in groups):
            problems.append(f"people.{name}.groups: expected a list of group names, got {groups!r}")
            groups = []
        token = entry.get("token")
        if token is not None and not (isinstance(token, str) and _HASH.fullmatch(token)):
            problems.append(
                f"people.{name}.token: expected 'sha256:' and 64 hex digits (the hash, never the token "
                f"itself); `proctor approvers add {name} --group GROUP` issues a new token"
            )
            token = None
        people.append(Person(name, frozenset(groups), token))
    return people


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the approvers file {path}: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc


def _write(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` in one step: a reader sees the old file or the new one, never half."""
    text = _HEADER + yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise ConfigurationError(f"cannot write the approvers file {path}: {exc.strerror or exc}") from exc
