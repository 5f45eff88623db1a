"""The ``proctor`` command; needs the ``cli`` extra (``pip install 'proctor[cli]'``)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``proctor`` console script."""
    try:
        from proctor.cli.main import cli
    except ImportError as exc:  # click or rich missing
        sys.stderr.write(
            f"proctor's command line needs its 'cli' extra ({exc.name} is missing):\n"
            "    pip install 'proctor[cli]'\n"
        )
        raise SystemExit(2) from None
    cli()
