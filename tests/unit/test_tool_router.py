"""Device tools answer in line; a home server's tools answer in the background, with their ids."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.app.tool_router import WHEN_IDLE, ToolRouter
from appliance.live import messages as p
from appliance.live.profiles import profile_for

DEFAULT = profile_for("gemini-3.8-live")  # calls are BLOCKING unless a declaration asks otherwise
SYNCHRONOUS = profile_for("gemini-3.1-flash-live-preview")  # no NON_BLOCKING at all
ASYNC_ONLY = profile_for("gemini-3.8-live-extended-thinking")  # every call NON_BLOCKING


class FakeHomeServer:
    """A fake of McpManager's call side: each call waits until the test releases it."""

    def __init__(self, names: set[str], slow: set[str] = frozenset()) -> None:
        self.names = names
        self.slow = slow  # declared NON_BLOCKING, as a server's non_blocking patterns make them
        self.gates: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.cancelled: list[str] = []
        self.waited_for: dict[str, bool] = {}

    def handles(self, name: str) -> bool:
        return name in self.names

    def declaration(self, name: str) -> dict[str, Any]:
        return {"name": name, **({"behavior": "NON_BLOCKING"} if name in self.slow else {})}

    def start_call(self, call_id: str, name: str, arguments: Any, *,
                   waited_for: bool = True) -> asyncio.Task[dict[str, Any]]:
        self.waited_for[call_id] = waited_for
        gate = self.gates[call_id] = asyncio.get_running_loop().create_future()

        async def call() -> dict[str, Any]:
            return await gate

        return asyncio.get_running_loop().create_task(call())

    def cancel_calls(self, ids: list[str]) -> list[str]:
        done = [i for i in ids if i in self.gates and not self.gates[i].done()]
        for call_id in done:
            self.gates[call_id].cancel()
        self.cancelled += done
        return done


def device(call: p.ToolCall) -> list[p.FunctionResponse]:
    return [p.FunctionResponse(fc.id or "", fc.name, {"output": "device"}) for fc in call.calls if fc.id]


def fc(call_id: str, name: str) -> p.FunctionCall:
    return p.FunctionCall(id=call_id, name=name, args={})


def test_a_slow_light_does_not_hold_back_the_timer_and_answers_with_its_own_id_when_done() -> None:
    async def scenario() -> tuple[list[p.FunctionResponse], list[list[p.FunctionResponse]]]:
        home = FakeHomeServer({"HassTurnOn"})
        sent: list[list[p.FunctionResponse]] = []
        answered = asyncio.Event()

        async def send(responses: list[p.FunctionResponse]) -> None:
            sent.append(responses)
            answered.set()

        router = ToolRouter(device, home, send, lambda: DEFAULT)
        now = await router(p.ToolCall(calls=(fc("1", "set_timer"), fc("2", "HassTurnOn"))))
        assert sent == []  # the light is still switching
        home.gates["2"].set_result({"output": "on"})
        await asyncio.wait_for(answered.wait(), 2)
        await router.close()
        return now, sent

    now, sent = asyncio.run(scenario())
    assert now == [p.FunctionResponse("1", "set_timer", {"output": "device"})]
    assert sent == [[p.FunctionResponse("2", "HassTurnOn", {"output": "on"})]]


def test_a_cancelled_call_is_cancelled_at_the_server_and_never_answered() -> None:
    async def scenario() -> tuple[list[str], list[Any]]:
        home = FakeHomeServer({"hang"})
        sent: list[Any] = []

        async def send(responses: list[p.FunctionResponse]) -> None:
            sent.append(responses)

        router = ToolRouter(device, home, send, lambda: DEFAULT)
        assert await router(p.ToolCall(calls=(fc("7", "hang"),))) == []
        cancelled = router.cancel(["7", "unknown"])
        for _ in range(5):
            await asyncio.sleep(0)  # let the cancelled task finish (no timing: a few loop turns)
        await router.close()
        return cancelled, sent

    cancelled, sent = asyncio.run(scenario())
    assert cancelled == ["7"] and sent == []


def test_without_home_servers_everything_goes_to_the_device() -> None:
    async def scenario() -> list[p.FunctionResponse]:
        async def send(responses: list[p.FunctionResponse]) -> None:
            raise AssertionError("nothing is sent later")

        return await ToolRouter(device, None, send, lambda: DEFAULT)(p.ToolCall(calls=(fc("1", "HassTurnOn"),)))

    assert asyncio.run(scenario()) == [p.FunctionResponse("1", "HassTurnOn", {"output": "device"})]


@pytest.mark.parametrize("profile, background, all_background", [
    (DEFAULT, True, False),
    (SYNCHRONOUS, False, False),
    (ASYNC_ONLY, True, True),  # the model waits for no call: every home call may take the long time
])
def test_a_non_blocking_tool_gets_the_long_timeout_and_is_told_when_idle_where_the_model_allows_it(
        profile, background, all_background) -> None:
    """A slow scene the model does not wait for; on a synchronous-only model it is an ordinary call."""
    async def scenario() -> tuple[dict[str, bool], list[list[p.FunctionResponse]]]:
        home = FakeHomeServer({"HassTurnOn", "movie_scene"}, slow={"movie_scene"})
        sent: list[list[p.FunctionResponse]] = []
        answered = asyncio.Event()

        async def send(responses: list[p.FunctionResponse]) -> None:
            sent.append(responses)
            if len(sent) == 2:
                answered.set()

        router = ToolRouter(device, home, send, lambda: profile)
        assert await router(p.ToolCall(calls=(fc("1", "movie_scene"), fc("2", "HassTurnOn")))) == []
        home.gates["1"].set_result({"output": "dimmed"})
        home.gates["2"].set_result({"output": "on"})
        await asyncio.wait_for(answered.wait(), 2)
        await router.close()
        return home.waited_for, sent

    waited_for, sent = asyncio.run(scenario())
    assert waited_for == {"1": not background, "2": not all_background}
    answers = {r.name: r for batch in sent for r in batch}
    assert answers["movie_scene"].scheduling == (WHEN_IDLE if background else None)
    # scheduling is only for NON_BLOCKING calls
    assert answers["HassTurnOn"].scheduling == (WHEN_IDLE if all_background else None)
    assert p.tool_response([answers["movie_scene"]])["toolResponse"]["functionResponses"][0].get("scheduling") == (
        "WHEN_IDLE" if background else None)
