"""``proctor mcp wrap``: a Claude Desktop configuration, wrapped with one command, starts its servers."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.mcp.helpers import SERVER, cli, text


def test_wrap_puts_every_command_server_behind_the_gateway(tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  - {id: no-etc, when: {args.path: {starts_with: /etc}}, action: deny}\n")
    config = tmp_path / "claude_desktop_config.json"
    original = {
        "mcpServers": {
            "files": {"command": sys.executable, "args": [SERVER, "stdio"], "env": {"LOG": "1"}},
            "remote": {"url": "https://example.com/mcp"},
        },
        "globalShortcut": "Ctrl+Space",
    }
    config.write_text(json.dumps(original, indent=2))
    db = tmp_path / "runs.db"

    done = cli("mcp", "wrap", str(config), "--policies", str(policies), "--db", str(db))
    assert done.exit_code == 0, done.output
    assert '-      "command": "' in done.stdout  # the diff
    assert "remote: left as it is (reached by URL" in done.stderr
    assert json.loads(config.with_name(config.name + ".bak").read_text()) == original
    wrapped = json.loads(config.read_text())
    files = wrapped["mcpServers"]["files"]
    assert files["args"][:2] == ["mcp", "proxy"]
    assert files["args"][files["args"].index("--") + 1 :] == [sys.executable, SERVER, "stdio"]
    assert files["env"] == {"LOG": "1"}
    assert wrapped["mcpServers"]["remote"] == original["mcpServers"]["remote"]
    assert wrapped["globalShortcut"] == "Ctrl+Space"

    again = cli("mcp", "wrap", str(config), "--policies", str(policies))
    assert "nothing to change" in again.stderr
    assert json.loads(config.read_text()) == wrapped

    async def start_as_a_client_would() -> None:
        params = StdioServerParameters(command=files["command"], args=files["args"], env=files["env"])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            denied = await client.call_tool("read_file", {"path": "/etc/passwd"})
            assert denied.is_error
            assert text(await client.call_tool("read_file", {"path": "/srv/a"})) == "contents of /srv/a"

    asyncio.run(start_as_a_client_would())
    assert db.exists()

    undone = cli("mcp", "wrap", "--undo", str(config))
    assert undone.exit_code == 0, undone.output
    assert json.loads(config.read_text()) == original


def test_wrap_refuses_a_file_that_is_not_a_client_configuration(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text('{"theme": "dark"}')
    (tmp_path / "policies.yaml").write_text("policies: []\n")
    done = cli("mcp", "wrap", str(config), "--policies", str(tmp_path / "policies.yaml"))
    assert done.exit_code == 1
    assert "no 'mcpServers' object" in done.stderr
    assert json.loads(config.read_text()) == {"theme": "dark"}
