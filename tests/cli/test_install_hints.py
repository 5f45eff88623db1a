"""The install commands proctor gives, in the README and in its errors, work from a clone.

proctor is not on PyPI: ``pip install 'proctor[web]'`` finds nothing; ``pip install -e '.[web]'``
in the clone installs the extra.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from proctor.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
_EXTRA = "(cli|web|redis|postgres|openai|anthropic|otel|prometheus|mcp|dev)"
FROM_THE_CLONE = re.compile(rf"pip install (--quiet )?-e '\.\[{_EXTRA}(,{_EXTRA})*\]'")


def test_every_pip_install_in_the_readme_installs_the_clone() -> None:
    commands = re.findall(r"pip install [^\n#]*", README.read_text())
    assert commands, "the README says how to install the web extra"
    for command in commands:
        assert FROM_THE_CLONE.match(command.strip()), command


def test_the_console_without_its_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the web extra were not installed
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "runs.db")])
    assert result.exit_code == 2
    assert "the console needs proctor's 'web' extra (uvicorn is missing)" in result.output
    assert "pip install -e '.[web]'" in result.output
    assert "pip install 'proctor[web]'" not in result.output


def test_the_command_line_without_its_extra_says_how_to_install_it() -> None:
    # The console script's entry point, in a process where click cannot be imported.
    blocked = "import sys; sys.modules['click'] = None; from proctor.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "proctor's command line needs its 'cli' extra (click is missing)" in result.stderr
    assert "pip install -e '.[cli]'" in result.stderr
