"""Policy files to rule sets: parse, validate, compile, and report every problem with its place."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from proctor.errors import PolicyConfigError
from proctor.rules._yaml import Path, SourceMap, YAMLProblem, load_yaml
from proctor.rules.compiler import CompileError, PIIScan, compile_when, facts_used, literal_tools
from proctor.rules.ruleset import CompiledRule, RuleSet
from proctor.rules.schema import Budget, Clamp, Defaults, PIISettings, PolicyFile, RateLimit, Rule

if TYPE_CHECKING:
    from proctor.pii import PIIDetector

__all__ = ["builtin_pii_scan", "load_policies", "parse_policies"]

# The model that validates the mapping found at each kind of path.
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): PolicyFile,
    ("defaults",): Defaults,
    ("pii",): PIISettings,
    ("policies", "#"): Rule,
    ("policies", "#", "clamp", "*"): Clamp,
    ("budgets", "#"): Budget,
    ("budgets", "#", "clamp", "*"): Clamp,
    ("rate_limits", "#"): RateLimit,
}


def load_policies(path: str | FilePath, *, pii: PIIScan | None = None) -> RuleSet:
    """Load and compile the policy file at ``path``.

    Raises ``PolicyConfigError`` listing every problem as ``file:line:column``.
    """
    file = str(path)
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyConfigError(
            [(f"{file}:1:1", f"cannot read the policy file: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise PolicyConfigError(
            [(f"{file}:1:1", f"the policy file is not UTF-8 text: {exc.reason}")]
        ) from None
    return parse_policies(text, file, pii=pii)


def parse_policies(
    source: str | Mapping[str, Any], file: str = "<string>", *, pii: PIIScan | None = None
) -> RuleSet:
    """Compile policies given as YAML text or as an already parsed mapping."""
    if isinstance(source, str):
        try:
            data, source_map = load_yaml(source, file)
        except YAMLProblem as exc:
            raise PolicyConfigError([(str(exc.location), exc.message)]) from None
    else:
        data, source_map = source, SourceMap(file)
    problems: list[tuple[Path, str, bool]] = []  # path, message, at the key rather than the value
    parsed = _validate(data, problems)
    if pii is None:
        pii = builtin_pii_scan(parsed.pii if parsed is not None else PIISettings())
    rules: list[CompiledRule] = []
    if isinstance(data, Mapping):
        if isinstance(data.get("policies"), list):
            _check_ids([("policies", data["policies"])], "rule", problems)
        # Budgets and rate limits share one store, where their ids keep them apart.
        limits = [(section, data.get(section)) for section in ("budgets", "rate_limits")]
        _check_ids(
            [(section, items) for section, items in limits if isinstance(items, list)], "limit", problems
        )
    if parsed is not None and not problems:
        for index, rule in enumerate(parsed.policies):
            try:
                condition = compile_when(rule.when, pii=pii)
            except CompileError as exc:
                where = ("policies", index, "when")
                found = _when_problems(rule.when, where, pii) or [((*where, *exc.path), exc.message, True)]
                problems.extend(found)
                continue
            if rule.action in ("modify", "require_approval") and "output" in facts_used(rule.when):
                problems.append(
                    (
                        ("policies", index, "action"),
                        f"a rule that reads output is checked after the call: it can deny, log or terminate, "
                        f"not {rule.action}",
                        False,
                    )
                )
                continue
            keyed = None
            if literal_tools(rule.when) is not None:
                keyed = compile_when({k: v for k, v in rule.when.items() if k != "tool"}, pii=pii)
            rules.append(CompiledRule(rule, index, condition, keyed))
    elif isinstance(data, Mapping) and isinstance(data.get("policies"), list):
        # Report problems inside ``when`` too, even when other parts of the file are wrong.
        for index, raw in enumerate(data["policies"]):
            when = raw.get("when") if isinstance(raw, Mapping) else None
            if isinstance(when, Mapping):
                problems.extend(_when_problems(when, ("policies", index, "when"), pii))
    if problems:
        raise PolicyConfigError(_located(problems, source_map))
    assert parsed is not None
    return RuleSet(
        rules,
        parsed.defaults,
        source=file,
        budgets=parsed.budgets,
        rate_limits=parsed.rate_limits,
        costs=parsed.costs,
    )


def _when_problems(when: Any, path: Path, pii: PIIScan | None) -> list[tuple[Path, str, bool]]:
    """Every problem of the ``when`` at ``path``, not only the first: each condition compiled on its own."""
    if isinstance(when, Mapping) and when:
        problems = []
        for key, value in when.items():
            if key in ("any", "all") and isinstance(value, list) and value:
                for position, item in enumerate(value):
                    problems += _when_problems(item, (*path, key, position), pii)
            elif key == "not" and isinstance(value, Mapping):
                problems += _when_problems(value, (*path, key), pii)
            elif isinstance(value, Mapping) and len(value) > 1:  # each operator; an unknown fact once
                found = [_first_problem({key: {op: operand}}, path, pii) for op, operand in value.items()]
                problems += dict.fromkeys(problem for each in found for problem in each)
            else:
                problems += _first_problem({key: value}, path, pii)
        return problems
    return _first_problem(when, path, pii)


def _first_problem(when: Any, path: Path, pii: PIIScan | None) -> list[tuple[Path, str, bool]]:
    """The first problem ``compile_when`` finds in ``when``, placed at ``path``; none when it compiles."""
    try:
        compile_when(when, pii=pii)
    except CompileError as exc:
        return [((*path, *exc.path), exc.message, True)]
    return []


def builtin_pii_scan(settings: PIISettings) -> PIIScan:
    """``contains_pii`` through the built-in detector, built on first use (phone metadata is large)."""
    detector: PIIDetector | None = None

    def scan(value: Any, kinds: Collection[str] | None) -> bool:
        nonlocal detector
        if detector is None:
            from proctor.pii import DEFAULT_PHONE_REGIONS, PIIDetector

            regions = settings.phone_regions or DEFAULT_PHONE_REGIONS
            detector = PIIDetector(kinds=settings.kinds, phone_regions=regions)
        return detector.contains(value, kinds)

    return scan


def _validate(data: Any, problems: list[tuple[Path, str, bool]]) -> PolicyFile | None:
    if not isinstance(data, Mapping):
        problems.append(
            (
                (),
                "a policy file is a mapping with a 'policies', 'budgets' or 'rate_limits' list at the top",
                False,
            )
        )
        return None
    if not {"policies", "budgets", "rate_limits"} & set(data):
        problems.append(((), f"missing required key 'policies' (or {_ONLY_LIMITS})", False))
    try:
        parsed = PolicyFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            path: Path = tuple(error["loc"])
            problems.append(_describe(error["type"], path, error["msg"], error.get("ctx")))
        return None
    return None if problems else parsed


def _describe(kind: str, path: Path, message: str, ctx: Mapping[str, Any] | None) -> tuple[Path, str, bool]:
    if kind == "extra_forbidden":
        key = path[-1]
        model = _model_at(path[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else ""
        return path, f"unknown key {key!r}; expected one of: {allowed}", True
    if kind == "missing":
        return path[:-1], f"missing required key {path[-1]!r}", False
    if kind == "literal_error" and ctx is not None:
        return path, f"{_name(path)}: expected one of {ctx.get('expected')}", False
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    named = bool(path) and isinstance(path[-1], str)
    return path, f"{_name(path)}: {message}" if named else message, False


_ONLY_LIMITS = "a file of only 'budgets' or 'rate_limits'"
_ITEM = {"policies": "rule", "budgets": "budget", "rate_limits": "rate limit"}


def _check_ids(
    sections: list[tuple[str, list[Any]]], what: str, problems: list[tuple[Path, str, bool]]
) -> None:
    """Report every id used twice across ``sections`` (each a name and its list)."""
    first: dict[str, tuple[str, int]] = {}
    for section, items in sections:
        for index, raw in enumerate(items):
            item_id = raw.get("id") if isinstance(raw, Mapping) else None
            if not isinstance(item_id, str):
                continue
            if item_id in first:
                other, at = first[item_id]
                problems.append(
                    (
                        (section, index, "id"),
                        f"duplicate {what} id {item_id!r} (also {_ITEM[other]} #{at + 1})",
                        False,
                    )
                )
            else:
                first[item_id] = (section, index)


def _model_at(path: Path) -> type[BaseModel] | None:
    shape = tuple("#" if isinstance(part, int) else part for part in path)
    if len(shape) == 4 and shape[1:3] == ("#", "clamp"):
        shape = (*shape[:3], "*")
    return _MODELS.get(shape)


def _name(path: Path) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return "value"


def _located(problems: list[tuple[Path, str, bool]], source_map: SourceMap) -> list[tuple[str, str]]:
    located = []
    for path, message, at_key in problems:
        location = source_map.key(path) if at_key else source_map.value(path)
        located.append((location, message))
    located.sort(key=lambda item: (item[0].line, item[0].column))
    return [(str(location), message) for location, message in located]
