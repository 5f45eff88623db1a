"""The ``proctor`` command; needs the ``cli`` extra (``pip install -e '.[cli]'`` in proctor's clone)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``proctor`` console script."""
    try:
        from proctor.cli.main import cli
    except ImportError as exc:  # click or rich missing
        sys.stderr.write(
            f"proctor's command line needs its 'cli' extra ({exc.name} is missing); in proctor's clone,\n"
            "    pip install -e '.[cli]'\n"
            "(proctor is not on PyPI; `make demo` in the clone installs it into .venv)\n"
        )
        raise SystemExit(2) from None
    cli()
