"""The gateway over stdio, in front of a real MCP server, driven by the SDK's ClientSession."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import mcp_types
import pytest
from mcp.shared.exceptions import MCPError
from starlette.testclient import TestClient

from proctor.approvals.approvers import Approvers
from proctor.web.app import create_app
from tests.mcp.helpers import actions, cli, proctor, runs, stdio_session, text

POLICIES = """\
costs: {"pri*": 0.25}
budgets:
  - {id: spend, per: tool, limit: 1.0, period: day}
policies:
  - id: no-etc
    when: {tool: read_file, args.path: {starts_with: /etc}}
    action: deny
    message: "No reading /etc"
  - {id: no-writes, when: {annotations.destructiveHint: true}, action: deny, message: "May not write"}
  - {id: twice, when: {tool: echo, args.text: loud}, action: modify, set: {args.times: 2}}
  - {id: secrets, when: {output: {contains_pii: [email]}}, action: deny, message: "The result holds an email"}
  - {id: deploy, when: {tool: echo, args.text: {starts_with: deploy}}, action: require_approval}
  - {id: stop, when: {tool: echo, args.text: stop}, action: terminate, message: "Enough"}
"""


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def test_one_session_through_the_gateway(policies: Path, db: Path) -> None:
    """One client session (starting servers takes seconds): every policy action, pass-through, approvals,
    cancellation, hot reload; then the session's run in the run log, and a what-if over it."""

    async def sample(context, params):  # the server's sampling request reaches the client unchanged
        return mcp_types.CreateMessageResult(
            role="assistant", content=mcp_types.TextContent(type="text", text="yes"), model="test"
        )

    async def session() -> None:
        async with stdio_session(policies, db, "--hold", "0.3", sampling_callback=sample) as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
            assert "write_file" not in listed  # always denied for this agent: not offered to the model
            assert {"echo", "read_file", "big"} <= set(listed)

            # allow, modify, deny
            assert text(await client.call_tool("echo", {"text": "loud"})) == "loud loud"  # patched
            denied = await client.call_tool("read_file", {"path": "/etc/passwd"})
            assert denied.is_error
            assert text(denied) == "Denied by policy no-etc: No reading /etc"
            assert (
                text(await client.call_tool("read_file", {"path": "/tmp/notes"})) == "contents of /tmp/notes"
            )
            written = await client.call_tool("write_file", {"path": "/tmp/x"})  # called although not listed
            assert written.is_error
            assert "May not write" in text(written)  # by its annotations
            seen = json.loads(text(await client.call_tool("seen", {})))
            assert seen[0] == {"tool": "echo", "text": "loud", "times": 2}  # the server saw the patch
            assert [call["tool"] for call in seen] == ["echo", "read_file"]  # no /etc, no write
            leaked = await client.call_tool("echo", {"text": "mail bob@example.com"})  # a rule on the result
            assert leaked.is_error
            assert "The result holds an email" in text(leaked)

            # pass-through: a large result, the server's sampling request, a cost in _meta
            large = await client.call_tool("big", {"size": 1_000_000})
            assert len(text(large)) == 1_000_000
            assert text(await client.call_tool("ask", {"question": "ok?"})) == "the client said: yes"
            assert not (await client.call_tool("priced", {"amount": 0.75})).is_error
            assert not (await client.call_tool("priced", {"amount": 0.75})).is_error  # 0.75 + 0.25 <= 1
            over = await client.call_tool("priced", {"amount": 0.75})  # 1.5 spent: the budget refuses
            assert over.is_error
            assert text(over).startswith("Refused by spend: "), text(over)

            # approval: held 0.3 s, "call again"; approved from another process; the same call finds it
            held = await client.call_tool("echo", {"text": "deploy v2"})
            assert held.is_error
            found = re.search(r"Approval request ([0-9a-f]{32}) is pending", text(held))
            assert found is not None, text(held)
            request = found.group(1)
            assert "Call the tool again with the same arguments" in text(held)
            other = await client.call_tool("echo", {"text": "deploy v3"})  # other arguments: another request
            assert other.is_error
            assert request not in text(other)
            decided = await asyncio.to_thread(
                proctor, "approvals", "approve", request, "--as", "alice", "--db", str(db)
            )
            assert decided.returncode == 0, decided.stderr
            assert text(await client.call_tool("echo", {"text": "deploy v2"})) == "deploy v2"
            once_more = await client.call_tool("echo", {"text": "deploy v2"})  # a decision answers one call
            assert once_more.is_error
            assert request not in text(once_more)

            # a call the client cancels; the session goes on
            slow = asyncio.ensure_future(client.call_tool("slow", {"seconds": 30}))
            await asyncio.sleep(0.5)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"

            # hot reload: a broken file keeps the rules in force; a good one replaces them
            good = policies.read_text()
            policies.write_text("policies:\n  - {id: broken, when: {tool: [}, action: deny}\n")
            await asyncio.sleep(0.8)
            assert text(await client.call_tool("read_file", {"path": "/etc/hosts"})).startswith(
                "Denied by policy"
            )
            policies.write_text(good.replace("starts_with: /etc", "starts_with: /var"))
            await asyncio.sleep(0.8)
            assert (
                text(await client.call_tool("read_file", {"path": "/etc/hosts"})) == "contents of /etc/hosts"
            )

            # terminate: this call and every later one
            stopped = await client.call_tool("echo", {"text": "stop"})
            assert stopped.is_error
            assert text(stopped).startswith("Session terminated by policy stop: Enough")
            after = await client.call_tool("read_file", {"path": "/tmp/notes"})
            assert after.is_error
            assert "terminated" in text(after)

    asyncio.run(session())

    [run] = runs(db)
    assert (run.status, run.tool, run.agent) == ("terminated", "mcp:python", "mcp")
    assert run.cost == pytest.approx(1.5)
    recorded = actions(db, run.run_id)
    statuses = [(action.tool, action.status) for action in recorded]
    assert ("read_file", "denied") in statuses
    assert ("slow", "cancelled") in statuses
    assert statuses[-1] == ("echo", "terminated")
    priced = [action for action in recorded if action.tool == "priced"]
    assert [(each.estimated_cost, each.actual_cost) for each in priced[:2]] == [
        (0.25, 0.75)
    ] * 2  # costs:; _meta
    assert priced[2].status == "denied"
    [approved] = [action for action in recorded if action.approval]
    assert json.loads(approved.approval)["approver"] == "alice"
    assert json.loads(approved.args) == {"text": "deploy v2"}

    assert run.run_id in cli("runs", "list", "--db", str(db)).stdout
    stricter = policies.with_name("stricter.yaml")
    stricter.write_text("policies:\n  - {id: no-reads, when: {tool: read_*}, action: deny}\n")
    whatif = cli("replay", "--policies", str(stricter), "--db", str(db), "--format", "json")
    assert whatif.exit_code == 0, whatif.output
    report = json.loads(whatif.stdout)
    assert "no-reads" in json.dumps(report)

    people = Approvers(path=policies.with_name("approvers.yaml"))  # proctor serve shows the session
    token = people.add("alice", ["ops"])
    with TestClient(
        create_app(db=db, approvers=people.path, secret="test"), follow_redirects=False
    ) as console:
        form = console.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        console.post("/login", data={"token": token, "csrf_token": csrf.group(1), "next": "/"})
        assert "mcp:python" in console.get("/runs").text
        timeline = console.get(f"/runs/{run.run_id}").text
        assert "no-etc" in timeline
        assert "read_file" in timeline


def test_a_server_that_crashes_mid_call_gives_an_error_result_and_ends_the_session(
    policies: Path, db: Path
) -> None:
    async def session() -> None:
        async with stdio_session(policies, db) as client:
            crashed = await client.call_tool("crash", {})
            assert crashed.is_error
            assert "closed the connection" in text(crashed)
            with pytest.raises((MCPError, OSError)):
                await client.call_tool("echo", {"text": "anyone?"})

    asyncio.run(session())
    [run] = runs(db)
    assert run.status == "failed"
    recorded = [(action.tool, action.status) for action in actions(db, run.run_id)]
    assert recorded[0] == ("crash", "failed")
    # the later call, when it reached the gateway before the session ended, failed there or was cancelled
    assert set(recorded[1:]) <= {("echo", "failed"), ("echo", "cancelled")}


def test_a_policy_file_that_fails_at_start_is_reported_with_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - id: x\n    when: {tool: echo}\n    action: explode\n")
    done = cli("mcp", "proxy", "--policies", str(bad), "--", "true")
    assert done.exit_code == 2
    assert f"{bad}:4:13" in done.stderr
    assert "nothing was started" in done.stderr
