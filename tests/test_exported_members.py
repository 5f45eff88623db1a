"""The public API is exactly what proctor's __init__ exports."""

from __future__ import annotations

import proctor
import proctor.policy
import proctor.task


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(proctor) if not name.startswith("_")}
    # Subpackages appear as attributes once imported; they are not exports.
    modules = {name for name in public if type(getattr(proctor, name)).__name__ == "module"}
    # ``annotations`` is the __future__ feature every module imports.
    assert set(proctor.__all__) == (public - modules - {"annotations"}) | {"__version__"}
    assert proctor.__all__ == sorted(proctor.__all__, key=lambda n: (not n.isupper(), n))


def test_public_classes_show_as_proctor_names() -> None:
    for name in proctor.__all__:
        obj = getattr(proctor, name)
        if isinstance(obj, type):
            assert obj.__module__ == "proctor", name


def test_seed_import_paths_declare_all() -> None:
    assert {"Policy", "PolicyViolationError"} <= set(proctor.policy.__all__)
    assert "Task" in proctor.task.__all__
    for name in proctor.policy.__all__:
        assert getattr(proctor.policy, name) is getattr(proctor, name)
    assert proctor.task.Task is proctor.Task
