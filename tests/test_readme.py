"""Every Python example in the README runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import proctor

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(
    source: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # what an example writes (a budgets file) stays out of the checkout
    try:
        exec(compile(source, str(README), "exec"), {"__name__": "readme_example"})
    finally:
        proctor.set_store(None)  # an example's default store is not the next test's
    capsys.readouterr()
