"""``proctor mcp``: the gateway that puts policy files in front of any MCP server."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

__all__ = ["mcp"]

_MISSING_SDK = (
    "the MCP gateway needs the official MCP SDK: install proctor's mcp extra "
    "(`pip install -e '.[mcp]'` in the clone)"
)


@click.group(name="mcp")
def mcp() -> None:
    """The MCP gateway: the same policy files on every tool call of any MCP client."""


@mcp.command(name="proxy", context_settings={"allow_interspersed_args": False})
@click.option(
    "--policies",
    "policies",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Policy file for the tool calls (repeat for several); reloaded when it changes.",
)
@click.option("--service", default="mcp", show_default=True, help="The service fact, and runs' service.")
@click.option("--agent", default=None, help="The agent fact  [default: the client's name from initialize]")
@click.option("--server", "server", default=None, help="The server fact  [default: the command's name]")
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a call that needs approval waits before it returns 'call again once approved'.",
)
@click.option(
    "--filter-tools/--no-filter-tools",
    default=True,
    show_default=True,
    help="Leave the tools a rule always denies for this agent out of tools/list.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A data label of every call (the labels.KEY fact); repeat for several.",
)
@click.option("--resource", default=None, help="Put every tool call behind a fair slot of this resource.")
@click.option("--capacity", type=click.IntRange(min=1), default=None, help="The resource's slots.")
@click.option("--upstream", default=None, metavar="URL", help="Forward to this streamable-HTTP server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --upstream: address to serve on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8471, show_default=True, help="With --upstream."
)
@click.option(
    "--db",
    default=None,
    metavar="PATH|URL",
    help="Record the sessions in this run log  [default: $PROCTOR_DB, else .proctor/runs.db]",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy(
    policies: tuple[str, ...],
    service: str,
    agent: str | None,
    server: str | None,
    hold: float,
    filter_tools: bool,
    labels: tuple[str, ...],
    resource: str | None,
    capacity: int | None,
    upstream: str | None,
    host: str,
    port: int,
    db: str | None,
    command: tuple[str, ...],
) -> None:
    """Serve MCP with policies on every tools/call, in front of an upstream server.

    \b
    Over stdio, the server is a command started as a child process:
      proctor mcp proxy --policies p.yaml -- npx -y @modelcontextprotocol/server-filesystem /tmp
    Over streamable HTTP, the server is a URL and the gateway serves http://HOST:PORT/mcp:
      proctor mcp proxy --policies p.yaml --upstream http://127.0.0.1:8000/mcp --port 8471

    Everything that is not a tools/call passes through unchanged. Each client
    session is a run in the run log (`proctor runs list`, `proctor replay`).
    Exits 1 when the upstream server goes away, 2 on a bad policy file or option.
    """
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise click.UsageError(_MISSING_SDK)
    from proctor.errors import PolicyConfigError

    pairs = [label.partition("=") for label in labels]
    if any(not key or not sep for key, sep, _ in pairs):
        raise click.UsageError("give each --label as KEY=VALUE, for instance --label data=internal")
    if (resource is None) != (capacity is None):
        raise click.UsageError("give --resource NAME and --capacity N together")
    if upstream is None and not command:
        raise click.UsageError("give the server's command after --, or --upstream URL")
    if upstream is not None and command:
        raise click.UsageError("give either a command after -- or --upstream URL, not both")
    if server is None:
        server = Path(command[0]).name if command else urlsplit(upstream or "").hostname or "upstream"
    try:
        gateway = _gateway(
            policies,
            service,
            agent,
            server,
            hold,
            filter_tools,
            resource,
            capacity,
            {key: value for key, _, value in pairs},
        )
    except PolicyConfigError as exc:
        for location, message in exc.problems:
            click.echo(f"{location}: {message}", err=True)
        click.echo("proctor mcp proxy: the policy file has problems; nothing was started", err=True)
        raise SystemExit(2) from None
    _log_to_stderr()
    if db is not None:
        os.environ["PROCTOR_DB"] = db  # read when the first session opens its run
    import asyncio

    if upstream is not None:
        from proctor.mcp_gateway.http import serve_http

        asyncio.run(serve_http(gateway, upstream, host=host, port=port))
        return
    from proctor.mcp_gateway.child import spawn

    try:
        server_process = spawn(command[0], command[1:])  # it starts while the SDK is imported here
    except OSError as exc:
        raise click.UsageError(str(exc)) from None
    from proctor.mcp_gateway.stdio import serve_stdio

    status = asyncio.run(serve_stdio(gateway, server_process))
    sys.stderr.flush()
    raise SystemExit(status)


def _gateway(
    policies: tuple[str, ...],
    service: str,
    agent: str | None,
    server: str,
    hold: float,
    filter_tools: bool,
    resource: str | None,
    capacity: int | None,
    labels: dict[str, str],
) -> Any:
    from proctor.mcp_gateway import Gateway
    from proctor.resource import SharedResource
    from proctor.scheduling import AsyncLOCOScheduler

    scheduler = None
    if resource is not None and capacity is not None:
        scheduler = AsyncLOCOScheduler([], SharedResource(resource, capacity=capacity))
    spec: Any = policies[0] if len(policies) == 1 else list(policies)
    return Gateway(
        spec,
        service=service,
        agent=agent,
        server=server,
        hold=hold,
        filter_tools=filter_tools,
        scheduler=scheduler,
        labels=labels,
    )


def _log_to_stderr() -> None:
    """proctor's warnings (approvals waiting, rules that log) on stderr: stdout may be the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("proctor mcp: %(levelname)s %(message)s"))
    root = logging.getLogger("proctor")
    root.addHandler(handler)
    if root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)


@mcp.command(name="wrap")
@click.argument("config", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--policies",
    default="policies.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The policy file every server's tool calls go through (written to the config as an absolute path).",
)
@click.option(
    "--db",
    default=None,
    metavar="PATH|URL",
    help="The run log the sessions go to  [default: $PROCTOR_DB, else ./.proctor/runs.db, absolute]",
)
@click.option("--service", default=None, help="The service fact of the calls  [default: mcp]")
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
@click.option("--undo", is_flag=True, help="Start every wrapped server directly again.")
def wrap(
    config: Path, policies: Path, db: str | None, service: str | None, dry_run: bool, undo: bool
) -> None:
    """Put every server of an MCP client's configuration behind the gateway.

    CONFIG is a JSON file with an "mcpServers" object, as Claude Desktop's
    claude_desktop_config.json (macOS: ~/Library/Application Support/Claude/,
    Windows: %APPDATA%\\Claude\\). Each server started by a command then starts
    as `proctor mcp proxy --policies FILE --server NAME -- COMMAND ARGS...`.
    Prints the diff and keeps the file as it was in CONFIG.bak. Restart the
    client afterwards. Wrapping twice changes nothing; --undo reverts.
    """
    from proctor.errors import ConfigurationError, PolicyConfigError
    from proctor.mcp_gateway.wrap import unwrap_config, wrap_config, write_config

    try:
        if undo:
            result = unwrap_config(config)
        else:
            from proctor.rules import load_policies

            load_policies(policies)  # a client would only see the gateway fail to start
            if db is None:
                db = os.environ.get("PROCTOR_DB") or str(Path(".proctor/runs.db").resolve())
            elif "://" not in db:
                db = str(Path(db).resolve())
            result = wrap_config(config, policies, db=db, service=service)
    except PolicyConfigError as exc:
        for location, message in exc.problems:
            click.echo(f"{location}: {message}", err=True)
        raise click.ClickException(f"{policies} has problems; the configuration was not changed") from None
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    for name, why in result.skipped.items():
        click.echo(f"{name}: left as it is ({why})", err=True)
    if not result.changed:
        click.echo(f"{config}: nothing to change", err=True)
        return
    click.echo(result.diff, nl=False)
    if dry_run:
        click.echo("(dry run: nothing written)", err=True)
        return
    backup = write_config(config, result.config)
    verb = "start directly again" if undo else "go through the gateway"
    click.echo(f"{', '.join(result.changed)} now {verb}; the previous file is in {backup}", err=True)
    click.echo("Restart the MCP client for the change to take effect.", err=True)
