"""The gateway over streamable HTTP, in front of a real MCP server over streamable HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import mcp_types
import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp.helpers import actions, http_gateway, http_session, runs, text, wait_until

POLICIES = """\
policies:
  - {id: no-etc, when: {tool: read_file, args.path: {starts_with: /etc}}, action: deny, message: "No /etc"}
  - {id: no-writes, when: {annotations.destructiveHint: true}, action: deny}
  - {id: twice, when: {tool: echo, args.text: loud}, action: modify, set: {args.times: 2}}
  - {id: labelled, when: {args.path: /srv/secret, labels.data: internal}, action: deny, message: "Internal"}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-http")


@pytest.fixture(scope="module")
def gateway(folder: Path) -> Iterator[str]:
    policies = folder / "policies.yaml"
    policies.write_text(POLICIES)
    options = ("--resource", "tools", "--capacity", "4", "--label", "data=internal")
    with http_gateway(policies, folder / "runs.db", *options) as url:
        yield url


def test_calls_are_governed_over_http_and_each_session_is_a_run(gateway: str, folder: Path) -> None:
    async def sample(context, params):  # the server's request during a call reaches the client
        return mcp_types.CreateMessageResult(
            role="assistant", content=mcp_types.TextContent(type="text", text="yes"), model="test"
        )

    async def sessions() -> None:
        async with http_session(gateway, sampling_callback=sample) as client:
            assert text(await client.call_tool("ask", {"question": "ok?"})) == "the client said: yes"
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert "write_file" not in listed
            assert "read_file" in listed
            assert text(await client.call_tool("echo", {"text": "loud"})) == "loud loud"
            denied = await client.call_tool("read_file", {"path": "/etc/passwd"})
            assert denied.is_error
            assert text(denied) == "Denied by policy no-etc: No /etc"
            labelled = await client.call_tool("read_file", {"path": "/srv/secret"})  # --label data=internal
            assert text(labelled) == "Denied by policy labelled: Internal"
        async with http_session(gateway) as client:
            assert text(await client.call_tool("read_file", {"path": "/srv/a"})) == "contents of /srv/a"

    asyncio.run(sessions())
    # the gateway records off the request path: wait until it has the sessions' ends
    wait_until(lambda: [run.status for run in runs(folder / "runs.db")] == ["succeeded"] * 2)
    recorded = runs(folder / "runs.db")
    assert len(recorded) == 2
    assert {run.status for run in recorded} == {"succeeded"}
    assert sorted(len(actions(folder / "runs.db", run.run_id)) for run in recorded) == [1, 4]


def test_fifty_concurrent_calls_in_one_session_share_four_slots(gateway: str) -> None:
    async def session() -> None:
        async with http_session(gateway) as client:
            echoes = await asyncio.gather(*(client.call_tool("echo", {"text": str(n)}) for n in range(50)))
            assert [text(result) for result in echoes] == [str(n) for n in range(50)]
            slow = await asyncio.gather(*(client.call_tool("slow", {"seconds": 0.05}) for _ in range(12)))
            assert all(text(result) == "done" for result in slow)
            assert 1 <= int(text(await client.call_tool("peak", {}))) <= 4  # --capacity 4

    asyncio.run(session())


def test_a_server_that_crashes_mid_call_gives_an_error_result_and_ends_the_session(
    gateway: str, folder: Path
) -> None:  # the module's last test: the shared server is gone after it
    async def session() -> None:
        async with http_session(gateway) as client:
            crashed = await client.call_tool("crash", {})
            assert crashed.is_error
            assert "closed the connection" in text(crashed)
            with pytest.raises(MCPError):
                await client.call_tool("echo", {"text": "anyone?"})

    asyncio.run(session())
    wait_until(lambda: runs(folder / "runs.db")[0].status != "running")  # the newest: this session's
    ended = runs(folder / "runs.db")[0]
    assert ended.status == "failed"
    recorded = [(action.tool, action.status) for action in actions(folder / "runs.db", ended.run_id)]
    assert recorded[0] == ("crash", "failed")
    assert set(recorded[1:]) <= {("echo", "failed"), ("echo", "cancelled")}  # if it came in time
