"""proctor's modules import one another one way: no cycle, counting only imports that run at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import proctor

SOURCE = Path(proctor.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """The proctor modules a module imports at its top level (not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("proctor"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = name.split(".") if is_package else name.split(".")[:-1]
                module = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("proctor"):
                found.add(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = _runtime_imports(tree, name, path.name == "__init__.py")
        # Importing proctor.a.b runs proctor.a's __init__ first, but that is the package's own
        # business: an edge goes to the module named, which must exist.
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules() -> None:
    graph = {name: {t for t in targets if not _is_package_init(t)} for name, targets in _graph().items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _is_package_init(name: str) -> bool:
    return (SOURCE.parent / Path(*name.split(".")) / "__init__.py").exists()
