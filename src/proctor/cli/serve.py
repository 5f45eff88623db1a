"""``proctor serve``: the web console over proctor's database."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import click

from proctor.approvals.approvers import DEFAULT_FILE, approvers_path
from proctor.cli.runs import DATABASE, CommandError
from proctor.db import Database
from proctor.errors import ConfigurationError, PolicyConfigError, StoreError
from proctor.runs.log import DEFAULT_PATH

__all__ = ["serve"]

DEFAULT_PORT = 8470
"""The console's port; ``$PROCTOR_CONSOLE_URL`` (the link in webhook notifications) assumes it."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--db",
    type=DATABASE,
    envvar="PROCTOR_DB",
    default=DEFAULT_PATH,
    show_default=True,
    show_envvar=True,
    metavar="PATH|URL",
    help="proctor's database: runs, actions and approvals (created when missing); a SQLite file, "
    "or a URL: sqlite:///runs.db, postgresql://user:password@host/dbname.",
)
@click.option(
    "--approvers",
    "approvers_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The approvers file whose tokens sign people in.  "
    f"[default: $PROCTOR_APPROVERS, else ./{DEFAULT_FILE}]",
)
@click.option(
    "--policies",
    "policy_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A policy file whose rules the policies page shows, with what they decided (repeat for more).",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve /metrics to Prometheus, without sign-in (needs proctor's 'prometheus' extra): the "
    "pending approvals, and with PROMETHEUS_MULTIPROC_DIR set the metrics of the agents' processes.",
)
def serve(
    host: str,
    port: int,
    db: Database,
    approvers_file: Path | None,
    policy_files: tuple[Path, ...],
    metrics: bool,
) -> None:
    """Serve the web console: pending approvals to approve or deny, runs, and the policies in force.

    Everyone signs in with their approver token, so the console needs an
    approvers file; `proctor approvers add NAME --group GROUP` creates it and
    prints the person's token. The console listens on 127.0.0.1 unless --host
    says otherwise; serve it to other machines only behind HTTPS. Set
    PROCTOR_SECRET to keep sign-ins across restarts.
    """
    try:
        import uvicorn

        from proctor.web.app import create_app
    except ImportError as exc:
        raise CommandError(
            f"the console needs proctor's 'web' extra ({exc.name} is missing); in proctor's clone, "
            "pip install -e '.[web]' (proctor is not on PyPI)"
        ) from None
    approvers = approvers_file or approvers_path()
    if approvers is None or not approvers.is_file():
        where = f"there is no file {approvers}" if approvers is not None else "none was found"
        raise CommandError(
            f"the console signs people in with the tokens of an approvers file, and {where}.\n"
            f"Create ./{DEFAULT_FILE} with a first approver, who gets a token to sign in with:\n"
            "    proctor approvers add NAME --group GROUP\n"
            "then run `proctor serve` again (or pass --approvers FILE, or set PROCTOR_APPROVERS)."
        )
    try:
        app = create_app(db=db.url, approvers=approvers, policies=policy_files, metrics=metrics)
    except PolicyConfigError as exc:
        raise CommandError(f"a policy file is invalid:\n{exc}") from None
    except (ConfigurationError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    click.echo(f"proctor console on {url}  (database {db}, approvers {approvers})")
    if metrics and not any(getattr(route, "path", None) == "/metrics" for route in app.routes):
        click.echo("note: no /metrics: prometheus-client is not installed (pip install -e '.[prometheus]')")
    if not _loopback(host):
        click.echo(
            f"warning: listening on {host}, not on loopback: other machines can reach the console; "
            "put it behind HTTPS (tokens and session cookies travel in clear over HTTP)",
            err=True,
        )
    if "PROCTOR_CONSOLE_URL" not in os.environ and port != DEFAULT_PORT:
        click.echo(f"note: set PROCTOR_CONSOLE_URL={url} where agents run, so notifications link here")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
