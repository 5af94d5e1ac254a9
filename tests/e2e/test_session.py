"""The session client against the strict emulator, over loopback with real frames."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import numpy as np
import pytest

from appliance.audio.speech import speechlike
from appliance.live import messages as p
from appliance.live.backoff import Backoff
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.live.conversation import Attributed, Outcome, TurnEnded
from appliance.live.connection import LiveSession, SessionOptions
from appliance.live.link import CloseKind, LinkChanged, LinkState, classify_close
from appliance.live.endpoint import InsecureEndpointError, check_endpoint
from appliance.settings.secrets import Secret

KEY = Secret("test-key-7f3a9c1e5b-do-not-log")
SET_TIMER = {
    "name": "set_timer",
    "description": "Start a kitchen timer",
    "parameters": {"type": "OBJECT", "properties": {"seconds": {"type": "INTEGER"}}, "required": ["seconds"]},
}
FRAME = 640  # 20 ms at 16 kHz, s16le


def run(coro: Awaitable[None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.05, cap_s=0.2)


def make_session(emulator: Emulator, *, functions=(), key=KEY, setup_timeout=5.0, **kwargs) -> LiveSession:
    settings = p.SessionSettings(model="gemini-3.8-live", functions=functions, system_instruction="Be brief.")
    options = SessionOptions(setup_timeout_s=setup_timeout)
    kwargs.setdefault("transient", fast_backoff())
    return LiveSession(emulator.url, settings, key, options, **kwargs)


async def ready(session: LiveSession, timeout: float = 5.0) -> None:
    session.start()
    assert await session.wait_ready(timeout), session.last_error


async def events_until(
    session: LiveSession, stop: Callable[[object], bool], timeout: float = 10.0
) -> list[object]:
    """Events (server events unwrapped from their turn) until `stop` says so."""
    seen: list[object] = []
    while True:
        event = await session.next_event(timeout)
        if isinstance(event, Attributed):
            event = event.event
        seen.append(event)
        if stop(event):
            return seen


def is_turn_end(event: object) -> bool:
    return isinstance(event, TurnEnded) and event.outcome is not Outcome.EMPTY


async def speak(session: LiveSession, pcm: bytes) -> bool:
    await session.activity_start()
    for i in range(0, len(pcm), FRAME):
        await session.send_audio(pcm[i : i + FRAME])
    return await session.activity_end()


def audio_of(events: list[object]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, p.AudioChunk))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n].astype(float), b[:n].astype(float)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


# ---------------------------------------------------------------- a turn


def test_a_spoken_turn_gets_a_spoken_reply():
    async def scenario():
        utterance = speechlike(1.0)
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="echo", transcript="set a timer")) as emu:
            session = make_session(emu)
            await ready(session)
            assert await speak(session, utterance)
            events = await events_until(session, is_turn_end)
            await session.close()

        heard = [e.text for e in events if isinstance(e, p.InputTranscript)]
        assert heard == ["set a timer"]
        reply = np.frombuffer(audio_of(events), "<i2")
        assert all(e.rate == 24000 for e in events if isinstance(e, p.AudioChunk))
        assert abs(len(reply) - 24000) < 240  # 1 s of input echoed at 24 kHz
        upsampled = np.interp(np.arange(24000) * 16000 / 24000, np.arange(16000), np.frombuffer(utterance, "<i2"))
        assert correlation(reply, upsampled) > 0.9
        assert any(isinstance(e, p.GenerationComplete) for e in events)
        assert any(isinstance(e, p.Usage) and e.total_tokens for e in events)

        conn = emu.connections[0]
        assert conn.has_key and not conn.key_in_url
        assert conn.extensions is None  # no permessage-deflate: zlib on base64 PCM costs a Pi Zero more than it saves
        kinds = [r.kind for r in emu.received]
        assert kinds[0] == "setup"
        bodies = [r.message.get("realtimeInput", {}) for r in emu.received if r.kind == "realtimeInput"]
        assert "activityStart" in bodies[0] and "activityEnd" in bodies[-1]
        assert sum(1 for b in bodies if "audio" in b) == len(utterance) // FRAME
        assert emu.turns[0].user_pcm == utterance

    run(scenario())


def test_a_press_without_audio_sends_no_activity_end_and_keeps_the_link():
    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            await ready(session)
            await session.activity_start()
            assert await session.activity_end() is False
            assert await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await session.close()
        assert len(emu.connections) == 1 and emu.connections[0].closed_by == "client"
        assert emu.connections[0].close_code == 1000
        ends = [r for r in emu.received if "activityEnd" in (r.message or {}).get("realtimeInput", {})]
        assert len(ends) == 1

    run(scenario())


def test_barge_in_interrupts_the_reply_and_starts_a_new_turn():
    async def scenario():
        config = EmulatorConfig(pace=3.0)
        async with Emulator(config, Scenario(reply="tone", tone_seconds=3.0)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.4))
            await events_until(session, lambda e: isinstance(e, p.AudioChunk))
            # the user presses again while the reply plays
            assert await speak(session, speechlike(0.4, seed=2))
            first = await events_until(session, is_turn_end)
            second = await events_until(session, is_turn_end)
            await session.close()
        assert first[-1].outcome is Outcome.INTERRUPTED
        assert len(audio_of(first)) < 3.0 * 24000 * 2 / 2  # cut well before the end
        assert emu.turns[0].interrupted and not emu.turns[1].interrupted
        # the second reply is whole, and none of the cut reply's residue got into it
        assert second[-1].outcome is Outcome.COMPLETE and second[-1].turn != first[-1].turn
        assert len(audio_of(second)) == 3.0 * 24000 * 2
        assert session.stats.residue_events >= 1

    run(scenario())


def test_tool_call_round_trip():
    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.2, tool_calls=[("set_timer", {"seconds": 60})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            session = make_session(emu, functions=(SET_TIMER,))
            await ready(session)
            await speak(session, speechlike(0.5))
            events = await events_until(session, lambda e: isinstance(e, p.ToolCall))
            call = events[-1].calls[0]
            assert call.name == "set_timer" and call.args == {"seconds": 60} and call.id
            assert session.busy  # a pending call keeps the session from handing over
            sent = await session.send_tool_response(
                [p.FunctionResponse(call.id, call.name, {"output": {"status": "started", "seconds": 60}})]
            )
            assert sent == 1
            rest = await events_until(session, is_turn_end)
            await session.close()
        assert audio_of(rest)
        assert emu.turns[0].tool_responses[0]["id"] == call.id
        decl = emu.connections[0].setup["tools"][0]["functionDeclarations"][0]
        assert decl["name"] == "set_timer"

    run(scenario())


def test_a_tool_response_for_a_dead_connection_is_dropped_not_sent():
    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.2, tool_calls=[("set_timer", {"seconds": 5})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            session = make_session(emu, functions=(SET_TIMER,))
            await ready(session)
            await speak(session, speechlike(0.3))
            call = (await events_until(session, lambda e: isinstance(e, p.ToolCall)))[-1].calls[0]
            emu.scenario = Scenario(reply="tone", tone_seconds=0.2)  # for the next connection
            await emu.drop_all()
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            sent = await session.send_tool_response([p.FunctionResponse(call.id, call.name, {"output": "ok"})])
            assert sent == 0 and session.stats.dropped_tool_responses == 1
            # the new connection is healthy: the strict emulator would have closed it for an unknown id
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await session.close()
        assert emu.connections[1].close_code == 1000

    run(scenario())


LIGHT_ON = {
    "name": "HassTurnOn",
    "description": "Turn on a device",
    "parameters": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "required": ["name"]},
}


def declared(emulator: Emulator, index: int) -> list[str]:
    tools = emulator.connections[index].setup.get("tools", [])
    return [d["name"] for tool in tools for d in tool.get("functionDeclarations", [])]


def test_tools_that_come_up_after_the_start_are_declared_in_the_next_session_and_called():
    """The function source (the MCP servers' tools) is asked at every setup: a server that came
    up during the first session has its tools declared in the second, and the model calls them."""
    offered: list[dict] = []

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.2, tool_calls=[("HassTurnOn", {"name": "kitchen"})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            settings = p.SessionSettings(model="gemini-3.8-live", functions=(SET_TIMER,),
                                         function_source=lambda: list(offered))
            session = LiveSession(emu.url, settings, KEY, SessionOptions(setup_timeout_s=5.0),
                                  transient=fast_backoff())
            await ready(session)
            offered.append(LIGHT_ON)  # the home server is up now
            session.new_conversation()
            await emu.wait_for(lambda e: len(e.connections) == 2 and e.connections[1].setup_complete, 5)
            assert await session.wait_ready(5)
            await speak(session, speechlike(0.3))
            events = await events_until(session, lambda e: isinstance(e, p.ToolCall))
            call = events[-1].calls[0]
            await session.send_tool_response([p.FunctionResponse(call.id, call.name, {"output": {"ok": True}})])
            await events_until(session, is_turn_end)
            await session.close()
        assert declared(emu, 0) == ["set_timer"]
        assert declared(emu, 1) == ["set_timer", "HassTurnOn"]
        assert (call.name, call.args) == ("HassTurnOn", {"name": "kitchen"})
        assert emu.turns[0].tool_responses[0]["id"] == call.id

    run(scenario())


def test_a_function_source_that_fails_costs_only_its_own_tools(caplog):
    def broken() -> list[dict]:
        raise RuntimeError("the tool list is broken")

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            settings = p.SessionSettings(model="gemini-3.8-live", functions=(SET_TIMER,), function_source=broken)
            session = LiveSession(emu.url, settings, KEY, SessionOptions(setup_timeout_s=5.0))
            await ready(session)
            await session.close()
        assert declared(emu, 0) == ["set_timer"]

    run(scenario())
    assert "the function declarations to add failed" in caplog.text


# ---------------------------------------------------------------- resumption


def test_go_away_hands_over_to_the_latest_handle_between_turns():
    async def scenario():
        config = EmulatorConfig(pace=0, connection_lifetime_s=1.0, goaway_grace_s=5.0)
        async with Emulator(config, Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            handle_after_turn = session.handle
            await events_until(session, lambda e: isinstance(e, p.GoAway))
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await session.close()
        first, second = emu.connections[0], emu.connections[1]
        assert handle_after_turn == first.handles_issued[-1]
        assert second.resumed_handle == handle_after_turn and second.restored_turns == 1
        # the old socket was closed by us, cleanly, before the server's deadline
        assert first.closed_by == "client" and first.close_code == 1000
        assert first.closed_at <= second.opened_at

    run(scenario())


def test_go_away_never_cuts_a_reply_in_flight():
    async def scenario():
        config = EmulatorConfig(pace=1.0, connection_lifetime_s=0.4, goaway_grace_s=10.0)
        async with Emulator(config, Scenario(reply="tone", tone_seconds=1.5)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.2))
            events = await events_until(session, is_turn_end)
            turn_done_at = asyncio.get_running_loop().time()
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await session.close()
        assert any(isinstance(e, p.GoAway) for e in events)  # it came mid-reply
        assert len(audio_of(events)) == 1.5 * 24000 * 2
        assert not emu.turns[0].interrupted
        assert emu.connections[1].opened_at >= turn_done_at - 0.05

    run(scenario())


def test_a_drop_resumes_the_conversation():
    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await emu.drop_all()
            changes = await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await session.close()
        offline = [e for e in changes if isinstance(e, LinkChanged) and e.state is LinkState.OFFLINE]
        assert offline and offline[0].close_code == 1006
        assert emu.connections[1].resumed_handle == emu.connections[0].handles_issued[-1]
        assert emu.connections[1].restored_turns == 1
        assert session.stats.resumed == 1

    run(scenario())


def test_an_utterance_spoken_through_a_drop_is_delivered_whole():
    async def scenario():
        utterance = speechlike(1.0)
        half = len(utterance) // 2 // FRAME * FRAME
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            await ready(session)
            await session.activity_start()
            for i in range(0, half, FRAME):
                await session.send_audio(utterance[i : i + FRAME])
            await emu.wait_for(lambda e: sum(1 for r in e.received if r.pcm) >= half // FRAME, 5)
            await emu.drop_all()
            for i in range(half, len(utterance), FRAME):  # the user keeps talking
                await session.send_audio(utterance[i : i + FRAME])
            assert await session.activity_end()
            await events_until(session, is_turn_end)
            await session.close()
        assert len(emu.turns) == 1
        assert emu.turns[0].conn_id == emu.connections[1].id
        assert emu.turns[0].user_pcm == utterance

    run(scenario())


def test_a_question_held_offline_is_retried_every_few_seconds_not_on_the_long_backoff():
    """The backoff can grow past the 20 s a held question is kept; while one waits, retries stay short."""

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu, transient=Backoff(base_s=20.0, cap_s=20.0))  # 10-20 s per retry
            await ready(session)
            await emu.go_offline()
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.OFFLINE)
            await session.activity_start()  # the press while offline, as the conductor does it
            session.try_now()
            await speak_rest(session, speechlike(0.5))
            # the retry the press asked for is refused too; the next one must not be 10-20 s away
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.OFFLINE)
            await emu.go_online()
            await emu.wait_for(lambda e: len(e.turns) == 1, 6.0)
            await events_until(session, is_turn_end)
            await session.close()
        assert emu.turns[0].user_pcm == speechlike(0.5)

    run(scenario())


async def speak_rest(session: LiveSession, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        await session.send_audio(pcm[i : i + FRAME])
    await session.activity_end()


def test_an_expired_handle_falls_back_to_a_fresh_conversation():
    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            session.handle = "handle-from-last-week"
            await ready(session)
            await session.close()
        assert emu.connections[0].close_code == 1008
        assert emu.connections[1].resumed_handle is None and emu.connections[1].setup_complete

    run(scenario())


def test_slow_setup_times_out_then_recovers():
    async def scenario():
        scen = Scenario(reply="tone", setup_delay_s=3.0, fault_connections=1)
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            session = make_session(emu, setup_timeout=0.3)
            session.start()
            changes = await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await session.close()
        offline = [e for e in changes if isinstance(e, LinkChanged) and e.state is LinkState.OFFLINE]
        assert "no setupComplete" in offline[0].reason
        assert len(emu.connections) == 2

    run(scenario())


def test_a_malformed_server_frame_is_skipped():
    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2, malformed_before_reply=True)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.3))
            events = await events_until(session, is_turn_end)
            await session.close()
        assert any(isinstance(e, p.ProtocolError) for e in events)
        assert audio_of(events) and session.stats.protocol_errors == 1
        assert len(emu.connections) == 1

    run(scenario())


# ---------------------------------------------------------------- refusals and secrets


def test_a_rejected_key_is_an_error_state_without_a_retry_storm(caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0, rejected_keys={KEY.reveal()}), Scenario()) as emu:
            session = make_session(emu)
            session.start()
            assert not await session.wait_ready(5)
            assert session.state is LinkState.ERROR
            assert "API key not valid" in session.last_error
            with pytest.raises(TimeoutError):
                await emu.wait_for(lambda e: len(e.connections) > 1, 1.5)
            await session.close()
        assert emu.connections[0].close_code == 1008

    run(scenario())
    assert KEY.reveal() not in caplog.text
    assert "API key not valid" in caplog.text


def test_an_unknown_model_is_an_error_state_with_the_service_reason():
    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario()) as emu:
            settings = p.SessionSettings(model="gemini-live-2.5-flash-preview")
            session = LiveSession(emu.url, settings, KEY)
            session.start()
            assert not await session.wait_ready(5)
            await session.close()
        assert "not found" in session.last_error

    run(scenario())


def test_the_key_is_never_logged_on_any_path(caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0, connection_lifetime_s=0.5, goaway_grace_s=1.0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = make_session(emu)
            await ready(session)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await emu.drop_all()
            await events_until(session, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.READY)
            await session.close()
        # an unreachable endpoint
        dead = LiveSession("ws://127.0.0.1:9/nothing", p.SessionSettings(model="gemini-3.8-live"), KEY)
        dead.start()
        await events_until(dead, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.OFFLINE)
        assert KEY.reveal() not in dead.last_error
        await dead.close()

    run(scenario())
    assert "websockets" in caplog.text or "appliance.live.wire" in {r.name for r in caplog.records}
    for record in caplog.records:
        assert KEY.reveal() not in record.getMessage()
        assert KEY.reveal() not in (record.exc_text or "")
    assert KEY.reveal() not in caplog.text


def test_plain_ws_is_only_allowed_to_loopback():
    check_endpoint("ws://127.0.0.1:8765/ws/x")
    check_endpoint("ws://localhost:1/ws")
    check_endpoint("ws://[::1]:1/ws")
    check_endpoint("wss://generativelanguage.googleapis.com/ws/x")
    with pytest.raises(InsecureEndpointError, match="in clear"):
        check_endpoint("ws://192.168.1.10:8765/ws")
    with pytest.raises(InsecureEndpointError, match="ws:// or wss://"):
        check_endpoint("https://example.invalid/")


@pytest.mark.parametrize(
    "code, reason, kind",
    [
        (1008, "models/x is not found for API version v1beta", CloseKind.CONFIG),
        (1008, "API key not valid. Please pass a valid API key.", CloseKind.CONFIG),
        (1007, "Request contains an invalid argument.", CloseKind.CONFIG),
        (1008, "BidiGenerateContent session not found", CloseKind.BAD_HANDLE),
        (1008, "Requested entity was not found", CloseKind.TRANSIENT),
        (1011, "Deadline expired before operation could complete.", CloseKind.RESUME),
        (1011, "Quota exceeded for quota metric 'Bidi generate content active sessions'", CloseKind.QUOTA),
        (1011, "Internal error encountered.", CloseKind.TRANSIENT),
        (1006, "", CloseKind.TRANSIENT),
        (None, "", CloseKind.TRANSIENT),
    ],
)
def test_close_codes_are_classified(code, reason, kind):
    assert classify_close(code, reason) is kind


def test_config_errors_back_off_slowly():
    from appliance.live.backoff import config_error_backoff, transient_backoff

    slow, fast = config_error_backoff(), transient_backoff()
    assert slow.next_delay() >= 15.0
    delays = [fast.next_delay() for _ in range(20)]
    assert delays[0] <= 0.5 and max(delays) <= 30.0 and delays[-1] >= 15.0


def test_an_ephemeral_token_uses_the_constrained_endpoint_and_token_header():
    from appliance.live.endpoint import endpoint_url
    from appliance.settings.schema import LiveConfig

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            path = endpoint_url(LiveConfig(auth="ephemeral")).split("/ws/", 1)[1]
            assert path.endswith("v1alpha.GenerativeService.BidiGenerateContentConstrained")
            url = f"{emu.base_url}/ws/{path}"
            token = Secret("auth_tokens/test-ephemeral-token")
            session = LiveSession(url, p.SessionSettings(model="gemini-3.8-live"), token, SessionOptions(auth="ephemeral"))
            await ready(session)
            await speak(session, speechlike(0.3))
            await events_until(session, is_turn_end)
            await session.close()
        conn = emu.connections[0]
        assert conn.endpoint == "BidiGenerateContentConstrained" and conn.api_version == "v1alpha"
        assert conn.has_key and not conn.key_in_url

    run(scenario())
