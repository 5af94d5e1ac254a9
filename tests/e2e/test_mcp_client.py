"""The MCP manager against real MCP servers built with the SDK: one over HTTP on loopback with a
bearer token, one the manager starts itself over stdio (tests/mcp_servers/home_server.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP tests need the optional SDK: pip install -e '.[home]'")

from appliance.mcp.config import McpServer, McpSettings  # noqa: E402
from appliance.mcp.manager import DOWN, UNAUTHORISED, UP, McpManager, ServerStatus, probe  # noqa: E402
from mcp_servers.rig import HttpHomeServer, stdio_entry, write_token  # noqa: E402
from waiting import wait_until  # noqa: E402

#: quick retries, so a test sees the background retry within its timeouts
RETRY_S = 0.3
LIGHT_ON_PARAMETERS = {"type": "OBJECT", "properties": {"area": {"type": "STRING"}}, "required": ["area"]}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> HttpHomeServer:
    """One HTTP server for the module; each test uses its own areas and counts differences."""
    token_file = tmp_path_factory.mktemp("home") / "token"
    write_token(token_file)
    server = HttpHomeServer(token_file)
    server.start()
    yield server
    server.stop()


def run(coro: Awaitable[None], timeout: float = 90.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def settings(*servers: McpServer, call_timeout_s: float = 5.0) -> McpSettings:
    return McpSettings(servers=servers, call_timeout_s=call_timeout_s, list_timeout_s=10.0, retry_s=RETRY_S)


def state_of(manager: McpManager, name: str) -> ServerStatus:
    return next(s for s in manager.status() if s.name == name)


async def until(manager: McpManager, name: str, state: str, timeout_s: float = 45.0) -> ServerStatus:
    reached = await manager.wait_for(lambda all_: state_of(manager, name).state == state, timeout_s)
    assert reached, f"{name} never became {state}: {state_of(manager, name).line()}"
    return state_of(manager, name)


async def until_output(manager: McpManager, tool: str, wanted: Callable[[dict], bool], what: str) -> dict:
    """Ask a state tool again until its answer says `what` (the server has no event to wait on)."""
    deadline = time.monotonic() + 20.0
    while True:
        answer = await manager.call(tool, {})
        if wanted(answer.get("output", {})):
            return answer
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last answer {answer}"
        await asyncio.sleep(0.05)


def by_name(declarations: tuple[dict, ...]) -> dict[str, dict]:
    return {d["name"]: d for d in declarations}


def test_the_tools_of_both_servers_are_declared_with_mapped_schemas(home: HttpHomeServer) -> None:
    async def scenario() -> None:
        manager = McpManager(settings(home.entry(), stdio_entry(include=("light_*",))), reserved={"hang_state"})
        manager.start()
        try:
            await until(manager, "home", UP)
            desk = await until(manager, "desk", UP)
            assert desk.tools == 2  # include kept light_on and light_state only
            declared = by_name(manager.declarations())
        finally:
            await manager.close()
        # both servers have light_on and light_state: each gets its server's name in front;
        # hang_state is one of the device's own names here, so it is prefixed too
        assert sorted(declared) == ["broken", "desk_light_on", "desk_light_state", "hang",
                                    "home_hang_state", "home_light_on", "home_light_state", "slow_scene"]
        assert declared["home_light_on"]["parameters"] == LIGHT_ON_PARAMETERS
        assert declared["desk_light_on"]["description"] == "Turn on the lights in an area of the house."
        assert "parameters" not in declared["home_light_state"]  # no arguments: no parameters at all

    run(scenario())


def test_light_on_keeps_state_and_its_answer_comes_back_over_http_and_stdio(home: HttpHomeServer) -> None:
    async def scenario() -> None:
        manager = McpManager(settings(home.entry(), stdio_entry()))
        manager.start()
        try:
            await until(manager, "home", UP)
            await until(manager, "desk", UP)
            manager.declarations()
            on = await manager.call("home_light_on", {"area": "kitchen"})
            state = await manager.call("home_light_state", {})
            desk_on = await manager.call("desk_light_on", {"area": "hall"})
            desk_state = await manager.call("desk_light_state", {})
        finally:
            await manager.close()
        assert on == {"output": {"success": True, "area": "kitchen", "state": "on"}}  # JSON text, parsed
        assert state["output"]["lights"]["kitchen"] is True  # structured content
        assert desk_on["output"]["area"] == "hall"
        assert desk_state == {"output": {"lights": {"hall": True}}}  # its own process, its own lights

    run(scenario())


def test_a_failing_tool_gives_an_error_answer_not_an_exception(home: HttpHomeServer) -> None:
    async def scenario() -> None:
        manager = McpManager(settings(home.entry()))
        manager.start()
        try:
            await until(manager, "home", UP)
            manager.declarations()
            broken = await manager.call("broken", {})
            unknown = await manager.call("no_such_tool", {})
            bad = await manager.call("light_on", ["not", "an", "object"])
            after = await manager.call("light_on", {"area": "garage"})
        finally:
            await manager.close()
        assert broken["error"]["code"] == "tool_failed"
        assert "broken" in broken["error"]["message"]
        assert unknown["error"]["code"] == "unknown_function"
        assert bad["error"]["code"] == "bad_arguments"
        assert after["output"]["area"] == "garage"

    run(scenario())


def test_a_hung_tool_times_out_is_cancelled_at_the_server_and_the_next_call_works(home: HttpHomeServer) -> None:
    async def scenario() -> None:
        manager = McpManager(settings(home.entry(), call_timeout_s=0.5))
        manager.start()
        try:
            await until(manager, "home", UP)
            manager.declarations()
            before = (await manager.call("hang_state", {}))["output"]
            hung = await manager.call("hang", {})
            after = await manager.call("light_on", {"area": "attic"})
            await until_output(manager, "hang_state", lambda out: out["cancelled"] == before["cancelled"] + 1,
                               "the server to see the timed-out call cancelled")
            status = state_of(manager, "home")
        finally:
            await manager.close()
        assert hung["error"]["code"] == "timeout"
        assert hung["error"]["retryable"] is True
        assert "0.5 s" in hung["error"]["message"]
        assert after["output"]["area"] == "attic"
        assert status.state == UP  # a slow tool is not a dead server

    run(scenario())


def test_cancelling_an_in_flight_call_cancels_it_at_the_server_and_blocks_nothing(home: HttpHomeServer) -> None:
    async def scenario() -> None:
        manager = McpManager(settings(home.entry(), stdio_entry(), call_timeout_s=60.0))
        manager.start()
        try:
            await until(manager, "home", UP)
            await until(manager, "desk", UP)
            manager.declarations()
            before = (await manager.call("home_hang_state", {}))["output"]
            hanging = manager.start_call("fc-7d1c", "home_hang", {})
            await until_output(manager, "home_hang_state", lambda out: out["started"] == before["started"] + 1,
                               "the hang call to reach the server")
            # while it hangs, the same server and the other one still answer
            same = await manager.call("home_light_on", {"area": "porch"})
            other = await manager.call("desk_light_on", {"area": "study"})
            assert manager.cancel_calls(["fc-7d1c", "fc-unknown"]) == ["fc-7d1c"]
            with pytest.raises(asyncio.CancelledError):
                await hanging
            await until_output(manager, "home_hang_state", lambda out: out["cancelled"] == before["cancelled"] + 1,
                               "the server to see the cancellation")
        finally:
            await manager.close()
        assert same["output"]["area"] == "porch"
        assert other["output"]["area"] == "study"

    run(scenario())


def test_a_wrong_token_is_unauthorised_in_one_line_with_no_tools(home: HttpHomeServer, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    wrong_file = tmp_path / "wrong-token"
    write_token(wrong_file)
    entry = McpServer(name="home", url=home.url, token_file=str(wrong_file))

    async def scenario() -> None:
        manager = McpManager(settings(entry))
        with caplog.at_level(logging.DEBUG, logger="appliance.mcp"):
            manager.start()
            try:
                status = await until(manager, "home", UNAUTHORISED)
                # let it retry at least once more: the owner is told once, not every retry_s
                await wait_until(lambda: _count(caplog, "home: still unauthorised") >= 1, "a second attempt", 20)
                declared = manager.declarations()
                answer = await manager.call("light_on", {"area": "kitchen"})
            finally:
                await manager.close()
        assert status.tools == 0
        assert declared == ()
        assert answer["error"]["code"] == "unknown_function"
        assert status.error is not None and "\n" not in status.error
        assert "refused the token in" in status.error and str(wrong_file) in status.error and "401" in status.error
        warnings = [r for r in caplog.records if r.name.startswith("appliance.mcp") and r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warnings] == [f"MCP server home is unauthorised: {status.error}; "
                                                      f"trying again every {RETRY_S:g} s"]

    run(scenario())


def test_a_server_started_late_is_picked_up_by_the_background_retry(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    write_token(token_file)
    late = HttpHomeServer(token_file)  # bound, not listening: connections are refused

    async def scenario() -> None:
        manager = McpManager(settings(late.entry()))
        manager.start()
        try:
            down = await until(manager, "home", DOWN)
            assert manager.declarations() == ()  # the session goes without it, at once
            late.start()
            up = await until(manager, "home", UP)
            declared = by_name(manager.declarations())
            answer = await manager.call("light_on", {"area": "cellar"})
        finally:
            await manager.close()
        assert "Connection refused" in (down.error or "")
        assert up.tools == 6 and up.error is None
        assert declared["light_on"]["parameters"] == LIGHT_ON_PARAMETERS
        assert answer["output"]["area"] == "cellar"

    try:
        run(scenario())
    finally:
        late.stop()


def test_a_server_that_goes_away_answers_calls_with_an_error_and_is_marked_down(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    write_token(token_file)
    going = HttpHomeServer(token_file)
    going.start()

    async def scenario() -> None:
        manager = McpManager(settings(going.entry()))
        manager.start()
        try:
            await until(manager, "home", UP)
            manager.declarations()
            going.stop()
            answer = await manager.call("light_on", {"area": "shed"})
            down = await until(manager, "home", DOWN)
        finally:
            await manager.close()
        assert answer["error"]["code"] == "unavailable" and answer["error"]["retryable"] is True
        assert down.tools == 0 and down.error

    try:
        run(scenario())
    finally:
        going.stop()


def test_probe_reports_each_server_for_doctor(home: HttpHomeServer, tmp_path: Path) -> None:
    wrong_file = tmp_path / "wrong-token"
    write_token(wrong_file)

    async def scenario() -> tuple[ServerStatus, ...]:
        return (
            await probe(home.entry(), 10.0),
            await probe(McpServer(name="home", url=home.url, token_file=str(wrong_file)), 10.0),
            await probe(stdio_entry(exclude=("hang*",)), 10.0),
            await probe(McpServer(name="gone", command=str(tmp_path / "no-such-server")), 10.0),
        )

    good, refused, desk, gone = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert (good.state, good.tools) == (UP, 6)
    assert (refused.state, refused.tools) == (UNAUTHORISED, 0)
    assert (desk.state, desk.tools) == (UP, 4)
    assert gone.state == DOWN and "cannot start the command" in (gone.error or "")
    assert good.line() == f"home ({home.url}): up, 6 tools"


def test_the_token_appears_in_no_log(home: HttpHomeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = Path(home.token_file).read_text().strip()
    wrong_file = tmp_path / "wrong-token"
    wrong = write_token(wrong_file)
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "mcp", "anyio", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)

    async def scenario() -> list[object]:
        manager = McpManager(settings(home.entry(), McpServer(name="other", url=home.url, token_file=str(wrong_file)),
                                      call_timeout_s=0.5), log_args=True)
        manager.start()
        try:
            await until(manager, "home", UP)
            await until(manager, "other", UNAUTHORISED)
            manager.declarations()
            answers = [await manager.call(tool, {"area": "loft"} if tool == "light_on" else {})
                       for tool in ("light_on", "broken", "hang")]
            return [*answers, *manager.status()]
        finally:
            await manager.close()

    seen = asyncio.run(asyncio.wait_for(scenario(), 90))
    logged = "\n".join(_rendered(record) for record in caplog.records)
    # the capture did see the SDK's and httpx's own debug lines, so the check below means something
    assert any(r.name.startswith("httpcore2") for r in caplog.records)
    assert any(r.name.startswith("mcp") for r in caplog.records)
    # (booleans, so that a failure does not print the token itself)
    leaked_in_log = token in logged or wrong in logged
    leaked_in_answers = any(token in repr(item) or wrong in repr(item) for item in seen)
    assert not leaked_in_log, "a token is in the log"
    assert not leaked_in_answers, "a token is in an answer or a status"


def _rendered(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text + (record.stack_info or "")


def _count(caplog: pytest.LogCaptureFixture, words: str) -> int:
    return sum(words in r.getMessage() for r in caplog.records)


def test_a_server_on_the_older_protocol_like_home_assistants_works_and_refuses_a_wrong_token(tmp_path: Path) -> None:
    """Home Assistant's server is on SDK 1.x: it answers the 2026 probe with a 400 and speaks
    the handshake-era protocol; the client falls back to it, and a 401 still reads as a 401."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    from appliance.mcp.client import Unauthorised, connect
    from appliance.mcp.config import load_token

    token_file = tmp_path / "token"
    write_token(token_file)
    wrong_file = tmp_path / "wrong"
    write_token(wrong_file)
    legacy = HttpHomeServer(token_file, legacy=True)
    legacy.start()

    async def scenario() -> None:
        async with connect(legacy.entry(), load_token(str(token_file), "token"), 30.0) as connection:
            assert connection.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
            assert [t.name for t in connection.tools][:2] == ["light_on", "light_state"]
            answer = await connection.call("light_on", {"area": "hall"})
        assert answer == {"output": {"success": True, "area": "hall", "state": "on"}}
        with pytest.raises(Unauthorised, match="401"):
            async with connect(legacy.entry(), load_token(str(wrong_file), "token"), 30.0):
                pass

    try:
        run(scenario())
    finally:
        legacy.stop()
