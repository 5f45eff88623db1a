"""The install commands proctor gives, in the README and in its errors, work from a clone.

proctor is not on PyPI: ``pip install 'proctor[web]'`` finds nothing; ``pip install -e '.[web]'``
in the clone installs the extra.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from proctor.cli import main
from proctor.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
FROM_THE_CLONE = re.compile(r"pip install (--quiet )?-e '\.\[(cli|web|dev)\]'")


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


def test_the_command_line_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "proctor.cli.main")
    monkeypatch.setitem(sys.modules, "click", None)  # as if the cli extra were not installed
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "proctor's command line needs its 'cli' extra (click is missing)" in error
    assert "pip install -e '.[cli]'" in error
