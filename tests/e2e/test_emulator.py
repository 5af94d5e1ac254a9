"""Behaviour of the Live API emulator, driven by a raw WebSocket client that builds JSON by hand.

These tests deliberately do not use the project's client: they pin down what the emulator accepts,
rejects (close code + reason) and sends, so client tests elsewhere can rely on it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from appliance.emulator.arguments import add_arguments
from appliance.emulator.server import Emulator, EmulatorConfig, run_from_args
from appliance.emulator.arguments import SCENARIO_HELP
from appliance.emulator.scenario import Scenario, ScenarioError

KEY = "emu-test-key-3f9a1c"  # a fake key; the tests check it never shows up anywhere
HEADERS = {"x-goog-api-key": KEY}
BASE_SETUP: dict[str, Any] = {
    "setup": {
        "model": "models/gemini-3.8-live",
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}, "languageCode": "en-US"},
            "temperature": 0.7, "topP": 0.9, "topK": 40, "maxOutputTokens": 512, "seed": 7,
            "mediaResolution": "MEDIA_RESOLUTION_LOW",
        },
        "systemInstruction": {"role": "user", "parts": [{"text": "You are a concise kitchen helper."}]},
        "tools": [{"functionDeclarations": [{
            "name": "set_timer", "description": "Start a kitchen timer",
            "parameters": {"type": "OBJECT", "properties": {"seconds": {"type": "INTEGER"}},
                           "required": ["seconds"]},
            "behavior": "BLOCKING"}]}],
        "realtimeInputConfig": {
            "automaticActivityDetection": {"disabled": True},
            "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY"},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "contextWindowCompression": {"triggerTokens": 25600, "slidingWindow": {"targetTokens": 12800}},
    }
}


def setup_msg(**changes: Any) -> dict[str, Any]:
    """BASE_SETUP with top-level setup fields replaced (value None removes the field)."""
    msg = copy.deepcopy(BASE_SETUP)
    for key, value in changes.items():
        if value is None:
            msg["setup"].pop(key, None)
        else:
            msg["setup"][key] = value
    return msg


def run(coro: Awaitable[None], timeout: float = 20.0) -> None:
    async def guarded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(guarded())


def make_emulator(scenario: Scenario | None = None, **config: Any) -> Emulator:
    config.setdefault("pace", 0)
    config.setdefault("connection_lifetime_s", None)
    return Emulator(EmulatorConfig(**config), scenario)


def sine16k(seconds: float = 1.0, hz: float = 300.0, rate: int = 16000) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(0.25 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def audio_msg(pcm: bytes, mime: str = "audio/pcm;rate=16000") -> str:
    return json.dumps({"realtimeInput": {"audio": {"mimeType": mime, "data": base64.b64encode(pcm).decode()}}})


ACTIVITY_START = json.dumps({"realtimeInput": {"activityStart": {}}})
ACTIVITY_END = json.dumps({"realtimeInput": {"activityEnd": {}}})


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        frame = await ws.recv()
    assert isinstance(frame, bytes), "server messages must come in binary frames"
    message: dict[str, Any] = json.loads(frame)
    return message


async def open_session(emu: Emulator, setup: dict[str, Any] | None = None, **kwargs: Any) -> ClientConnection:
    ws = await connect(emu.url, additional_headers=HEADERS, proxy=None, **kwargs)
    await ws.send(json.dumps(setup or BASE_SETUP))
    assert await recv_json(ws) == {"setupComplete": {}}
    return ws


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the connection closes; return the close code and reason the client saw."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def rejected(emu: Emulator, *messages: Any, headers: dict[str, str] | None = None,
                   url: str | None = None) -> tuple[int, str]:
    """Send messages (dicts are JSON-encoded, str/bytes sent raw) and return the close the server answers with."""
    ws = await connect(url or emu.url, additional_headers=HEADERS if headers is None else headers, proxy=None)
    try:
        for message in messages:
            await ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
        return await closed_with(ws)
    finally:
        await ws.close()


async def send_activity(ws: ClientConnection, pcm: bytes, chunk_bytes: int = 1280) -> None:
    await ws.send(ACTIVITY_START)
    for i in range(0, len(pcm), chunk_bytes):
        await ws.send(audio_msg(pcm[i:i + chunk_bytes]))
    await ws.send(ACTIVITY_END)


async def collect_turn(ws: ClientConnection, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages up to and including the one with turnComplete."""
    messages = []
    while True:
        message = await recv_json(ws, timeout)
        messages.append(message)
        if message.get("serverContent", {}).get("turnComplete"):
            return messages


def reply_audio(messages: list[dict[str, Any]], urlsafe: bool = False) -> bytes:
    pcm = bytearray()
    for message in messages:
        for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            assert part["inlineData"]["mimeType"] == "audio/pcm;rate=24000"
            data = part["inlineData"]["data"]
            pcm += base64.urlsafe_b64decode(data) if urlsafe else base64.b64decode(data, validate=True)
    return bytes(pcm)


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


# ----------------------------------------------------------------------------------------------------------
# Full turns
# ----------------------------------------------------------------------------------------------------------


def test_echo_turn_returns_the_user_audio_at_24k_in_order_then_generation_and_turn_complete() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="echo", transcript="set a timer")) as emu:
            ws = await open_session(emu)
            sent = sine16k(1.0, 300.0)
            await send_activity(ws, sent)
            messages = await collect_turn(ws)
            await ws.close()

            assert messages[0] == {"serverContent": {"inputTranscription": {"text": "set a timer", "finished": True}}}
            audio_messages = [m for m in messages if "modelTurn" in m.get("serverContent", {})]
            chunk_sizes = [len(base64.b64decode(m["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"]))
                           for m in audio_messages]
            assert all(size == 960 * 2 for size in chunk_sizes[:-1])  # 40 ms at 24 kHz
            assert any("outputTranscription" in m["serverContent"] for m in audio_messages)
            kinds = [next(iter(m["serverContent"])) for m in messages]
            assert kinds.index("generationComplete") == len(messages) - 2
            final = messages[-1]
            assert final["serverContent"] == {"turnComplete": True}
            usage = final["usageMetadata"]
            assert all(isinstance(usage[k], int) for k in ("promptTokenCount", "responseTokenCount", "totalTokenCount"))
            assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"] > 0

            reply = reply_audio(messages)
            assert len(reply) // 2 == pytest.approx(24000, abs=2)  # 1 s at 24 kHz
            expected = as_float(sine16k(1.0, 300.0, rate=24000))
            got = as_float(reply)[: len(expected)]
            inner = slice(500, len(expected) - 500)  # skip filter edges
            assert np.corrcoef(got[inner], expected[inner])[0, 1] > 0.98
            turn = emu.turns[0]
            assert turn.user_pcm == sent and bytes(turn.reply_pcm) == reply  # arrival order == send order
            assert turn.turn_complete and turn.generation_complete and not turn.interrupted
            assert emu.internal_errors == []

    run(body())


def test_tone_reply_is_a_440hz_tone_of_the_configured_length_with_fades() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.5)) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.2))
            reply = as_float(reply_audio(await collect_turn(ws)))
            await ws.close()
        assert len(reply) == 12000
        spectrum = np.abs(np.fft.rfft(reply))
        assert np.argmax(spectrum) * 24000 / len(reply) == pytest.approx(440, abs=4)
        assert abs(reply[0]) < 200 and abs(reply[-1]) < 200 and np.max(np.abs(reply)) > 5000

    run(body())


def test_paced_reply_arrives_faster_than_real_time_but_not_all_at_once() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=1.0), pace=1.7) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.2))
            arrivals = []
            while True:
                message = await recv_json(ws)
                if "modelTurn" in message.get("serverContent", {}):
                    arrivals.append(time.monotonic())
                if message.get("serverContent", {}).get("turnComplete"):
                    break
            await ws.close()
        span = arrivals[-1] - arrivals[0]
        assert 0.3 <= span <= 1.0, f"1.0 s of reply audio arrived over {span:.3f} s"

    run(body())


def test_text_and_client_content_turns_get_a_reply() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="echo", tone_seconds=0.2)) as emu:
            ws = await open_session(emu)
            # manual activity detection: a typed turn is wrapped in activityStart/activityEnd like speech
            await ws.send(ACTIVITY_START)
            await ws.send(json.dumps({"realtimeInput": {"text": "turn on the oven"}}))
            await ws.send(ACTIVITY_END)
            messages = await collect_turn(ws)
            assert messages[0]["serverContent"]["inputTranscription"]["text"] == "turn on the oven"
            assert len(reply_audio(messages)) == 0.2 * 24000 * 2  # no user audio to echo: tone instead
            await ws.send(json.dumps({"clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "What's 2+2?"}]}], "turnComplete": True}}))
            assert reply_audio(await collect_turn(ws))
            await ws.close()
            assert [t.source for t in emu.turns] == ["text", "clientContent"]

    run(body())


def test_other_input_rates_are_resampled_to_16k() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)
            await ws.send(ACTIVITY_START)
            await ws.send(audio_msg(sine16k(0.5, rate=48000), mime="audio/pcm;rate=48000"))
            await ws.send(audio_msg(sine16k(0.5), mime="audio/pcm"))  # no rate means 16 kHz
            await ws.send(ACTIVITY_END)
            await collect_turn(ws)
            await ws.close()
            assert len(emu.turns[0].user_pcm) == 16000 * 2

    run(body())


def test_urlsafe_base64_option_emits_urlsafe_alphabet() -> None:
    async def body() -> None:
        noise = np.random.default_rng(1).integers(-20000, 20000, 8000).astype("<i2").tobytes()
        async with make_emulator(Scenario(reply="echo", urlsafe_b64=True)) as emu:
            ws = await open_session(emu)
            await send_activity(ws, noise)
            messages = await collect_turn(ws)
            await ws.close()
        data = "".join(p["inlineData"]["data"] for m in messages
                       for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))
        assert "+" not in data and "/" not in data and ("-" in data or "_" in data)
        assert len(reply_audio(messages, urlsafe=True)) == 12000 * 2

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Strictness: close codes and reasons
# ----------------------------------------------------------------------------------------------------------


def test_first_message_must_be_setup() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, ACTIVITY_START)
            assert code == 1007 and "setup" in reason and "realtimeInput" in reason

    run(body())


def test_seed_docs_config_message_is_rejected() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            config = {"config": {"model": "models/gemini-3.8-live", "responseModalities": ["AUDIO"]}}
            code, reason = await rejected(emu, config)
            assert code == 1007 and 'Unknown name "config"' in reason

    run(body())


@pytest.mark.parametrize(("setup", "named"), [
    (setup_msg(generationConfig={"speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voice": "Kore"}}}}),
     'Unknown name "voice" at \'setup.generation_config.speech_config.voice_config.'),  # cut at 123 bytes
    (setup_msg(responseModalities=["AUDIO"]), 'Unknown name "responseModalities" at \'setup\''),
    (setup_msg(realtimeInputConfig={"automaticActivityDetection": {"disable": True}}), '"disable"'),
    (setup_msg(tools=[{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "propertys": {}}}]}]),
     '"propertys"'),
    (setup_msg(generationConfig={"temperature": "hot"}), "'setup.generation_config.temperature'"),
    (setup_msg(tools=[{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}]),
     "parameters.type"),
    (setup_msg(tools=[{"functionDeclarations": [{"name": "set timer"}]}]), "functionDeclarations[0].name"),
])
def test_unknown_or_mistyped_setup_fields_close_1007_naming_the_field(setup: dict[str, Any], named: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, setup)
            assert code == 1007 and named in reason, reason
            assert len(reason.encode()) <= 123

    run(body())


def test_snake_case_is_accepted_at_every_level_and_normalised() -> None:
    async def body() -> None:
        snake = {"setup": {
            "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
            "generation_config": {"response_modalities": ["AUDIO"],
                                  "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}},
                                  "thinking_config": {"thinking_budget": 0, "include_thoughts": False},
                                  "enable_affective_dialog": True},
            "system_instruction": {"parts": [{"text": "hi"}], "role": "user"},
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
            "context_window_compression": {"trigger_tokens": "25600", "sliding_window": {"target_tokens": 12800}},
            "proactivity": {"proactive_audio": True},
            "input_audio_transcription": {},
            "session_resumption": {},
        }}
        async with make_emulator() as emu:
            ws = await open_session(emu, snake)
            assert "sessionResumptionUpdate" in await recv_json(ws)
            await ws.send(json.dumps({"realtime_input": {"activity_start": {}}}))
            await ws.send(json.dumps({"realtime_input": {"audio": {
                "mime_type": "audio/pcm;rate=16000", "data": base64.urlsafe_b64encode(sine16k(0.1)).decode()}}}))
            await ws.send(json.dumps({"realtime_input": {"activity_end": {}}}))
            await collect_turn(ws)
            await ws.close()
            setup = emu.connections[0].setup
            assert setup is not None
            assert setup["realtimeInputConfig"]["automaticActivityDetection"]["disabled"] is True
            assert setup["contextWindowCompression"]["triggerTokens"] == 25600
            assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"] == {"voiceName": "Kore"}

    run(body())


def test_unknown_model_closes_1008_not_found_for_the_api_version() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, setup_msg(model="models/gemini-2.0-flash-live-001"))
            assert code == 1008
            assert reason.startswith("models/gemini-2.0-flash-live-001 is not found for API version v1beta, or is "
                                     "not supported for bidiGenerateContent. Call Lis")
            assert len(reason.encode()) == 123
            url = emu.base_url + "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
            code, reason = await rejected(emu, setup_msg(model="models/nope"), url=url)
            assert code == 1008 and "for API version v1," in reason

    run(body())


def test_missing_or_invalid_key_closes_1008_after_setup() -> None:
    async def body() -> None:
        async with make_emulator(rejected_keys=frozenset({"revoked-key"})) as emu:
            code, reason = await rejected(emu, BASE_SETUP, headers={})
            assert code == 1008 and reason.startswith("Method doesn't allow unregistered callers")
            assert len(reason.encode()) <= 123
            code, reason = await rejected(emu, BASE_SETUP, headers={"x-goog-api-key": "revoked-key"})
            assert (code, reason) == (1008, "API key not valid. Please pass a valid API key.")
            assert "revoked-key" not in repr(emu.config) + repr(emu.connections)

    run(body())


@pytest.mark.parametrize(("model", "generation_config", "extra", "named"), [
    ("gemini-3.8-live", {"thinkingConfig": {"thinkingLevel": "LOW"}}, {}, "thinkingConfig"),
    ("gemini-3.8-live", {"enableAffectiveDialog": True}, {}, "enableAffectiveDialog"),
    ("gemini-3.8-live", {}, {"proactivity": {"proactiveAudio": False}}, "proactiveAudio"),
    ("gemini-3.1-flash-live-preview", {"thinkingConfig": {"thinkingBudget": 0}}, {}, "thinkingBudget"),
    ("gemini-3.1-flash-live-preview", {}, {"proactivity": {"proactiveAudio": True}}, "proactivity"),
    ("gemini-3.1-flash-live-preview", {"responseModalities": ["TEXT"]}, {},
     "The requested combination of response modalities (TEXT) is not supported by the model"),
])
def test_model_specific_setup_rules_close_1007(model: str, generation_config: dict[str, Any],
                                               extra: dict[str, Any], named: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            msg = setup_msg(model=f"models/{model}", generationConfig=generation_config, **extra)
            code, reason = await rejected(emu, msg)
            assert code == 1007 and named in reason, reason

    run(body())


def test_documented_model_configs_are_accepted() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ok = [
                setup_msg(model="models/gemini-3.1-flash-live-preview",
                          generationConfig={"thinkingConfig": {"thinkingLevel": "MINIMAL"}}),
                setup_msg(model="models/gemini-3.8-live", proactivity={"proactiveAudio": True}),
                setup_msg(model="models/gemini-2.5-flash-native-audio-preview-12-2025",
                          generationConfig={"thinkingConfig": {"thinkingBudget": 0}, "enableAffectiveDialog": True},
                          proactivity={"proactiveAudio": True}),
            ]
            for msg in ok:
                ws = await open_session(emu, msg)
                await ws.close()

    run(body())


def test_activity_signals_need_aad_disabled_and_audio_stream_end_needs_it_enabled() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, setup_msg(realtimeInputConfig=None), ACTIVITY_START)
            assert code == 1007 and "activityStart" in reason and "disabled" in reason
            code, reason = await rejected(emu, BASE_SETUP, {"realtimeInput": {"audioStreamEnd": True}})
            assert code == 1007 and "audioStreamEnd" in reason

    run(body())


def test_activity_end_without_audio_or_without_start_is_no_turn_to_complete() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            for messages in ([ACTIVITY_START, ACTIVITY_END], [ACTIVITY_END]):
                code, reason = await rejected(emu, BASE_SETUP, *messages)
                assert code == 1007 and "No turn to complete" in reason

    run(body())


@pytest.mark.parametrize(("message", "named"), [
    ({"realtimeInput": {"activityStart": {}, "activityEnd": {}}}, "exactly one field"),
    ({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "not base64!"}}},
     "'realtime_input.audio.data' (TYPE_BYTES), Base64 decoding failed"),
    ({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(b"abc").decode()}}},
     "even"),
    ({"realtimeInput": {"audio": {"mimeType": "audio/wav", "data": ""}}}, "realtimeInput.audio.mimeType"),
    ({"realtimeInput": {"audio": {"data": ""}}}, "realtimeInput.audio.mimeType"),
    ({"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "", "sampleRate": 16000}}}, '"sampleRate"'),
    ({"toolResponse": {"functionResponses": [{"id": "fc-made-up", "name": "set_timer", "response": {}}]}},
     "fc-made-up"),
    ({"toolResponse": {"functionResponses": [{"name": "set_timer", "response": {}}]}}, "id is required"),
    ({"clientContent": {"turns": [{"role": "assistant", "parts": [{"text": "x"}]}]}}, "turns[0].role"),
    ({"realtimeInput": {"text": "a"}, "clientContent": {"turnComplete": True}}, "Oneof"),
    (setup_msg(), "setup may only be sent once"),
    ("{not json", "Invalid JSON payload received."),
    ("[1, 2]", "Expected a JSON object"),
])
def test_bad_messages_after_setup_close_1007_naming_the_problem(message: Any, named: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, BASE_SETUP, message)
            assert code == 1007 and named in reason, reason

    run(body())


def test_client_json_in_binary_frames_is_accepted() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await connect(emu.url, additional_headers=HEADERS, proxy=None)
            await ws.send(json.dumps(BASE_SETUP).encode())
            assert await recv_json(ws) == {"setupComplete": {}}
            await ws.close()

    run(body())


def test_wrong_path_is_http_404() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            for path in ("/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent", "/"):
                with pytest.raises(InvalidStatus) as info:
                    await connect(emu.base_url + path, additional_headers=HEADERS, proxy=None)
                assert info.value.response.status_code == 404

    run(body())


def test_constrained_endpoint_takes_an_ephemeral_token() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            url = emu.base_url + "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
            ws = await connect(url, additional_headers={"Authorization": "Token auth_tokens/abc"}, proxy=None)
            await ws.send(json.dumps(BASE_SETUP))
            assert await recv_json(ws) == {"setupComplete": {}}
            await ws.close()
            code, _ = await rejected(emu, BASE_SETUP, url=url, headers={"Authorization": "Bearer x"})
            assert code == 1008
            assert [c.endpoint for c in emu.connections] == ["BidiGenerateContentConstrained"] * 2

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Activities, barge-in, tool calls
# ----------------------------------------------------------------------------------------------------------


def test_audio_outside_an_activity_is_ignored_and_counted() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)
            for _ in range(3):
                await ws.send(audio_msg(sine16k(0.04, hz=1000)))
            inside = sine16k(0.2)
            await send_activity(ws, inside)
            await collect_turn(ws)
            await ws.close()
            assert emu.ignored_audio_chunks == 3 and emu.connections[0].ignored_audio_chunks == 3
            assert emu.turns[0].user_pcm == inside

    run(body())


def test_activity_start_during_reply_interrupts_then_a_new_turn_works() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=3.0), pace=1.7) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.2))
            while "modelTurn" not in (await recv_json(ws)).get("serverContent", {}):
                pass
            await ws.send(ACTIVITY_START)
            after = []
            while True:
                message = await recv_json(ws)
                if message.get("serverContent", {}).get("interrupted"):
                    break
                after.append(message)  # audio already in flight before the server saw activityStart
            assert len(after) <= 10  # a 3 s reply would be 75 chunks
            tail = await collect_turn(ws)
            assert tail[-1]["serverContent"]["turnComplete"] is True
            assert not reply_audio(tail) and not any("generationComplete" in m.get("serverContent", {}) for m in tail)
            first = emu.turns[0]
            assert first.interrupted and len(first.reply_pcm) < 24000 * 2  # far less than the 3 s tone
            # The interrupting activity becomes the next turn.
            await ws.send(audio_msg(sine16k(0.1)))
            await ws.send(ACTIVITY_END)
            second = await collect_turn(ws, timeout=10)
            assert len(reply_audio(second)) == 3 * 24000 * 2
            await ws.close()

    run(body())


def test_repeated_activity_start_restarts_the_activity_and_is_recorded() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)
            await ws.send(ACTIVITY_START)
            await ws.send(audio_msg(sine16k(0.1, hz=1000)))  # discarded by the restart
            kept = sine16k(0.2)
            await send_activity(ws, kept)
            await collect_turn(ws)
            await ws.close()
            assert emu.connections[0].activity_restarts == 1 and emu.turns[0].user_pcm == kept

    run(body())


def test_no_interruption_lets_the_reply_finish_then_answers_the_next_turn() -> None:
    async def body() -> None:
        setup = setup_msg(realtimeInputConfig={"automaticActivityDetection": {"disabled": True},
                                               "activityHandling": "NO_INTERRUPTION"})
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.5), pace=1.7) as emu:
            ws = await open_session(emu, setup)
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)  # input transcription
            await send_activity(ws, sine16k(0.1))
            first = await collect_turn(ws)
            second = await collect_turn(ws)
            await ws.close()
            assert not any(m.get("serverContent", {}).get("interrupted") for m in first + second)
            assert len(reply_audio(first)) == len(reply_audio(second)) == 0.5 * 24000 * 2

    run(body())


def test_with_automatic_activity_detection_audio_stream_end_closes_the_turn() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu, setup_msg(realtimeInputConfig=None))
            sent = sine16k(0.3)
            await ws.send(audio_msg(sent))
            await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
            assert len(reply_audio(await collect_turn(ws))) == 0.3 * 24000 * 2
            await ws.close()
            assert emu.turns[0].user_pcm == sent and emu.ignored_audio_chunks == 0

    run(body())


def test_activity_audio_is_capped() -> None:
    async def body() -> None:
        async with make_emulator(max_activity_seconds=0.25) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.5))
            await collect_turn(ws)
            await ws.close()
            assert len(emu.turns[0].user_pcm) == 0.25 * 16000 * 2 and emu.turns[0].audio_truncated

    run(body())


def test_tool_call_round_trip_records_the_response_then_replies() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=0.2, tool_calls=[("set_timer", {"seconds": 60})])
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.2))
            assert "inputTranscription" in (await recv_json(ws))["serverContent"]
            call_message = await recv_json(ws)
            (call,) = call_message["toolCall"]["functionCalls"]
            assert call["name"] == "set_timer" and call["args"] == {"seconds": 60} and call["id"].startswith("fc-")
            payload = {"output": {"status": "started", "seconds": 60}}
            await ws.send(json.dumps({"toolResponse": {"functionResponses": [
                {"id": call["id"], "name": "set_timer", "response": payload}]}}))
            messages = await collect_turn(ws)
            assert len(reply_audio(messages)) == 0.2 * 24000 * 2
            # The same id again is no longer pending.
            await ws.send(json.dumps({"toolResponse": {"functionResponses": [
                {"id": call["id"], "name": "set_timer", "response": payload}]}}))
            code, reason = await closed_with(ws)
            assert code == 1007 and call["id"] in reason
            assert emu.turns[0].tool_responses[0]["response"] == payload

    run(body())


def test_tool_response_with_the_wrong_name_closes_1007() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(tool_calls=[("set_timer", {"seconds": 5})])) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)
            call = (await recv_json(ws))["toolCall"]["functionCalls"][0]
            await ws.send(json.dumps({"toolResponse": {"functionResponses": [
                {"id": call["id"], "name": "setTimer", "response": {}}]}}))
            code, reason = await closed_with(ws)
            assert code == 1007 and "setTimer" in reason

    run(body())


def test_barge_in_during_a_pending_tool_call_cancels_it() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(tool_calls=[("set_timer", {"seconds": 5})])) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)
            call = (await recv_json(ws))["toolCall"]["functionCalls"][0]
            await ws.send(ACTIVITY_START)
            assert await recv_json(ws) == {"serverContent": {"interrupted": True}}
            assert await recv_json(ws) == {"toolCallCancellation": {"ids": [call["id"]]}}
            assert (await recv_json(ws))["serverContent"] == {"turnComplete": True}
            await ws.close()
            assert emu.turns[0].cancelled_tool_calls == [call["id"]]

    run(body())


def test_scripted_call_to_an_undeclared_function_is_not_made() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1, tool_calls=[("set_timer", {})])) as emu:
            ws = await open_session(emu, setup_msg(tools=None))
            await send_activity(ws, sine16k(0.1))
            messages = await collect_turn(ws)
            await ws.close()
            assert not any("toolCall" in m for m in messages)
            assert emu.turns[0].skipped_tool_calls == ["set_timer"]

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Resumption, goAway, faults
# ----------------------------------------------------------------------------------------------------------


async def resumable_session(emu: Emulator, handle: str | None = None) -> tuple[ClientConnection, str]:
    ws = await open_session(emu, setup_msg(sessionResumption={"handle": handle} if handle else {}))
    update = await recv_json(ws)
    assert update["sessionResumptionUpdate"]["resumable"] is True
    return ws, update["sessionResumptionUpdate"]["newHandle"]


def test_resumption_restores_the_turn_count_and_rejects_bad_resumes() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1)) as emu:
            ws, handle = await resumable_session(emu)
            for _ in range(2):
                await send_activity(ws, sine16k(0.1))
                await collect_turn(ws)
                update = await recv_json(ws)  # a fresh handle after every turnComplete
                assert update["sessionResumptionUpdate"]["newHandle"] != handle
                handle = update["sessionResumptionUpdate"]["newHandle"]

            # Resuming while the old socket is still open is refused.
            code, reason = await rejected(emu, setup_msg(sessionResumption={"handle": handle}))
            assert (code, reason) == (1011, "Internal error encountered.")

            await ws.close()
            ws2, _ = await resumable_session(emu, handle)
            await ws2.close()
            record = emu.connections[-1]
            assert record.resumed_handle == handle and record.restored_turns == 2

            code, reason = await rejected(emu, setup_msg(sessionResumption={"handle": "no-such-handle"}))
            assert code == 1008 and "session not found" in reason

    run(body())


def test_goaway_then_deadline_expired_1011() -> None:
    async def body() -> None:
        async with make_emulator(connection_lifetime_s=0.2, goaway_grace_s=0.3) as emu:
            ws = await open_session(emu)
            assert await recv_json(ws) == {"goAway": {"timeLeft": "0.3s"}}
            code, reason = await closed_with(ws)
            assert (code, reason) == (1011, "Deadline expired before operation could complete.")
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert emu.connections[0].closed_by == "server"

    run(body())


def test_drop_after_n_messages_gives_1006_and_resumption_then_works() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=0.5, drop_after=4, fault_connections=1)
        async with make_emulator(scenario) as emu:
            ws, handle = await resumable_session(emu)  # messages 1 and 2
            await send_activity(ws, sine16k(0.1))
            received = []
            with pytest.raises(ConnectionClosed):
                while True:
                    received.append(await recv_json(ws))
            assert ws.close_code == 1006 and len(received) == 2  # inputTranscription + one audio chunk
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert (emu.connections[0].closed_by, emu.connections[0].close_code) == ("server", 1006)

            ws2, _ = await resumable_session(emu, handle)  # second connection: no fault
            await send_activity(ws2, sine16k(0.1))
            assert len(reply_audio(await collect_turn(ws2))) == 0.5 * 24000 * 2
            await ws2.close()

    run(body())


def test_malformed_and_unknown_frames_come_before_a_reply_that_still_completes() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=0.1, malformed_before_reply=True,
                            unknown_message_before_reply=True)
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.1))
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            with pytest.raises(json.JSONDecodeError):
                json.loads(frame)
            unknown = await recv_json(ws)
            assert not set(unknown) & {"serverContent", "toolCall", "setupComplete", "goAway"}
            assert len(reply_audio(await collect_turn(ws))) == 0.1 * 24000 * 2
            await ws.close()

    run(body())


def test_close_after_setup_and_reject_setup_faults() -> None:
    async def body() -> None:
        async with make_emulator(Scenario.parse("close:1011:Internal error encountered.")) as emu:
            ws = await open_session(emu)
            assert await closed_with(ws) == (1011, "Internal error encountered.")
            emu.scenario = Scenario(reject_setup=(1007, "Request contains an invalid argument."))
            assert await rejected(emu, BASE_SETUP) == (1007, "Request contains an invalid argument.")

    run(body())


def test_slow_setup_delays_setup_complete_and_counts_early_messages() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(setup_delay_s=0.3)) as emu:
            ws = await connect(emu.url, additional_headers=HEADERS, proxy=None)
            started = time.monotonic()
            await ws.send(json.dumps(BASE_SETUP))
            await ws.send(ACTIVITY_START)  # too early: a correct client waits for setupComplete
            assert await recv_json(ws) == {"setupComplete": {}}
            assert time.monotonic() - started >= 0.25
            await ws.send(audio_msg(sine16k(0.1)))
            await ws.send(ACTIVITY_END)
            await collect_turn(ws)  # the early activityStart was still processed in order
            await ws.close()
            assert emu.connections[0].early_messages == 1

    run(body())


def test_drop_all_and_close_all() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws1 = await open_session(emu)
            await emu.drop_all()
            assert (await closed_with(ws1))[0] == 1006
            ws2 = await open_session(emu)
            await emu.close_all(1011, "The service is currently unavailable.")
            assert await closed_with(ws2) == (1011, "The service is currently unavailable.")

    run(body())


def test_client_close_is_recorded_as_client() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)
            await ws.close(1000)
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            record = emu.connections[0]
            assert (record.closed_by, record.close_code) == ("client", 1000)

    run(body())


def test_wait_for_times_out_with_a_helpful_message() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)

            def first_turn_done(e: Emulator) -> bool:
                return e.turns[0].turn_complete

            with pytest.raises(TimeoutError) as info:
                await emu.wait_for(first_turn_done, 0.05)
            await ws.close()
        text = str(info.value)
        assert "first_turn_done" in text and "IndexError" in text and "1 connection(s)" in text

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Records, log, secrets
# ----------------------------------------------------------------------------------------------------------


def test_json_lines_log_and_records_never_hold_the_key(tmp_path: Path) -> None:
    log_path = tmp_path / "emulator.jsonl"

    async def body() -> Emulator:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1), log_path=str(log_path)) as emu:
            ws = await open_session(emu)
            chunk = sine16k(0.04)
            await send_activity(ws, chunk, chunk_bytes=len(chunk))
            await collect_turn(ws)
            await ws.close()
            # The documented form with the key in the URL still works, but is flagged.
            ws2 = await connect(f"{emu.url}?key={KEY}", proxy=None, user_agent_header="test-agent/1")
            await ws2.send(json.dumps(BASE_SETUP))
            assert await recv_json(ws2) == {"setupComplete": {}}
            await ws2.close()
            await emu.wait_for(lambda e: all(c.closed for c in e.connections), 2)
        return emu

    emu_holder: list[Emulator] = []

    async def outer() -> None:
        emu_holder.append(await body())

    run(outer())
    emu = emu_holder[0]
    assert [c.key_in_url for c in emu.connections] == [False, True]
    assert all(c.has_key for c in emu.connections)
    assert emu.connections[1].user_agent == "test-agent/1" and "?" not in emu.connections[1].path

    text = log_path.read_text()
    assert KEY not in text
    assert KEY not in repr(emu.connections) + repr(emu.received) + repr(emu.turns) + emu.describe()
    events = [json.loads(line) for line in text.splitlines()]
    audio = [e for e in events if e["event"] == "received" and "audio" in e["message"].get("realtimeInput", {})]
    assert audio[0]["message"]["realtimeInput"]["audio"]["data"] == 1280  # byte length, not the base64
    assert [e["event"] for e in events].count("connect") == 2
    received_audio = [r for r in emu.received if r.pcm is not None]
    assert received_audio[0].pcm == sine16k(0.04) and received_audio[0].pcm_rate == 16000


# ----------------------------------------------------------------------------------------------------------
# Scenario specs and CLI
# ----------------------------------------------------------------------------------------------------------


def test_scenario_specs_combine() -> None:
    s = Scenario.from_specs(["tone:2.5", 'tool:set_timer:{"seconds": 60}', "drop-after:5",
                             "close-after:9:1008:The operation was aborted.", "slow-setup:3", "malformed",
                             "fault-connections:1", "urlsafe-b64"])
    assert (s.reply, s.tone_seconds, s.tool_calls) == ("tone", 2.5, [("set_timer", {"seconds": 60})])
    assert (s.drop_after, s.close_after, s.close_code, s.close_reason) == (5, 9, 1008, "The operation was aborted.")
    assert s.setup_delay_s == 3 and s.malformed_before_reply and s.fault_connections == 1 and s.urlsafe_b64


@pytest.mark.parametrize("spec", ["drop-after:x", "tool:set_timer:[1]", "close:1006:x", "bogus", "tone:-1",
                                  "tool:f:{bad json"])
def test_bad_scenario_spec_is_one_clear_line(spec: str) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.parse(spec)
    message = str(info.value)
    assert "\n" not in message and spec.split(":")[0] in message


def parse_cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_refuses_non_loopback_host_and_bad_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert asyncio.run(run_from_args(parse_cli("--host", "0.0.0.0"))) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1" in err and err.count("\n") == 1
    assert asyncio.run(run_from_args(parse_cli("--scenario", "drop-after:soon"))) == 2
    err = capsys.readouterr().err
    assert "drop-after" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="127.0.0.1"):
        asyncio.run(Emulator(EmulatorConfig(host="192.168.1.5")).start())


def test_cli_prints_its_url_serves_and_stops_on_sigterm() -> None:
    async def body() -> None:
        code = ("import asyncio, argparse, sys\n"
                "from appliance.emulator.arguments import add_arguments\n"
                "from appliance.emulator.server import run_from_args\n"
                "p = argparse.ArgumentParser(); add_arguments(p)\n"
                "sys.exit(asyncio.run(run_from_args(p.parse_args(sys.argv[1:]))))\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, "--scenario", "tone:0.1", "--pace", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_PROXY": "*"})
        assert proc.stdout is not None
        try:
            url = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
            assert url.startswith("ws://127.0.0.1:") and url.endswith(
                "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")
            ws = await connect(url, additional_headers=HEADERS, proxy=None)
            await ws.send(json.dumps(BASE_SETUP))
            assert await recv_json(ws) == {"setupComplete": {}}
            await send_activity(ws, sine16k(0.1))
            assert len(reply_audio(await collect_turn(ws))) == 0.1 * 24000 * 2
            proc.terminate()
            assert (await closed_with(ws))[0] == 1001
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(body(), timeout=30)


# ----------------------------------------------------------------------------------------------------------
# Strictness added with the December 2026 corrections
# ----------------------------------------------------------------------------------------------------------

MEDIA_CHUNK = {"realtimeInput": {"mediaChunks": [{"mimeType": "audio/pcm;rate=16000",
                                                  "data": base64.b64encode(sine16k(0.05)).decode()}]}}
DECLARE = {"name": "set_timer", "description": "Start a kitchen timer",
           "parameters": {"type": "OBJECT", "properties": {"seconds": {"type": "INTEGER"}}}}


def tools_with(**declaration: Any) -> list[dict[str, Any]]:
    return [{"functionDeclarations": [{**DECLARE, **declaration}]}]


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-3.1-flash-live-preview"])
def test_media_chunks_close_1007_as_deprecated_from_3_1_on(model: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, setup_msg(model=f"models/{model}", tools=None),
                                          ACTIVITY_START, MEDIA_CHUNK)
            assert code == 1007 and "mediaChunks is deprecated" in reason, reason
            assert len(reason.encode()) <= 123

    run(body())


def test_media_chunks_still_work_on_2_5() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1)) as emu:
            ws = await open_session(emu, setup_msg(model="models/gemini-2.5-flash-native-audio-preview-12-2025"))
            await ws.send(ACTIVITY_START)
            await ws.send(json.dumps(MEDIA_CHUNK))
            await ws.send(ACTIVITY_END)
            await collect_turn(ws)
            await ws.close()
            assert len(emu.turns[0].user_pcm) == 0.05 * 16000 * 2

    run(body())


@pytest.mark.parametrize(("messages", "named"), [
    ([setup_msg(sessionResumption={"handle": None})], "null at 'setup.session_resumption.handle'"),
    ([setup_msg(generationConfig={"responseModalities": ["AUDIO"], "temperature": None})],
     "'setup.generation_config.temperature'"),
    ([setup_msg(systemInstruction=None, inputAudioTranscription={}, realtimeInputConfig={
        "automaticActivityDetection": {"disabled": True}, "activityHandling": None})], "activity_handling"),
    ([BASE_SETUP, {"realtimeInput": {"audio": None}}], "'realtime_input.audio'"),
    ([BASE_SETUP, {"realtimeInput": None}], "'realtime_input'"),
    ([setup_msg(tools=tools_with(description=None))], "description"),
    ([setup_msg(tools=tools_with(parameters={"type": "OBJECT", "example": {"seconds": None}}))],
     'example["seconds"]'),
])
def test_null_values_close_1007_on_3_8(messages: list[Any], named: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, *messages)
            assert code == 1007 and named in reason and "null" in reason, reason

    run(body())


def test_null_inside_a_tool_response_closes_1007_on_3_8() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(tool_calls=[("set_timer", {"seconds": 5})])) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)
            call = (await recv_json(ws))["toolCall"]["functionCalls"][0]
            await ws.send(json.dumps({"toolResponse": {"functionResponses": [
                {"id": call["id"], "name": "set_timer", "response": {"output": {"label": None}}}]}}))
            code, reason = await closed_with(ws)
            assert code == 1007 and 'response["output"]["label"]' in reason and "null" in reason, reason

    run(body())


def test_null_handle_reads_as_no_handle_on_2_5() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu, setup_msg(model="models/gemini-2.5-flash-native-audio-preview-12-2025",
                                                   sessionResumption={"handle": None}))
            assert "sessionResumptionUpdate" in await recv_json(ws)
            await ws.close()
            assert emu.connections[0].resumed_handle is None

    run(body())


def test_bare_text_under_manual_activity_detection_closes_1007() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, BASE_SETUP, {"realtimeInput": {"text": "turn on the oven"}})
            assert code == 1007 and "realtimeInput.text needs activityStart" in reason, reason
            assert len(reason.encode()) <= 123

    run(body())


def test_text_inside_an_activity_is_answered_like_an_utterance_and_bare_text_works_with_aad() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1)) as emu:
            ws = await open_session(emu)
            await ws.send(ACTIVITY_START)
            await ws.send(json.dumps({"realtimeInput": {"text": "how long"}}))
            await ws.send(json.dumps({"realtimeInput": {"text": "for an egg?"}}))
            await ws.send(ACTIVITY_END)
            messages = await collect_turn(ws)
            assert messages[0]["serverContent"]["inputTranscription"]["text"] == "how long for an egg?"
            assert len(reply_audio(messages)) == 0.1 * 24000 * 2
            await ws.close()
            ws2 = await open_session(emu, setup_msg(realtimeInputConfig=None))
            await ws2.send(json.dumps({"realtimeInput": {"text": "hello"}}))
            assert reply_audio(await collect_turn(ws2))
            await ws2.close()
            assert [(t.source, t.input_text, t.ending) for t in emu.turns] == [
                ("text", "how long for an egg?", "complete"), ("text", "hello", "complete")]

    run(body())


EXTENDED = "models/gemini-3.8-live-extended-thinking"


@pytest.mark.parametrize(("declaration", "shown"), [({"behavior": "BLOCKING"}, "BLOCKING"), ({}, "unset"),
                                                    ({"behavior": "UNSPECIFIED"}, "UNSPECIFIED")])
def test_extended_thinking_refuses_functions_that_are_not_non_blocking(declaration: dict[str, Any],
                                                                       shown: str) -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            code, reason = await rejected(emu, setup_msg(model=EXTENDED, tools=tools_with(**declaration)))
            assert code == 1007 and "NON_BLOCKING functions only" in reason and f"behavior {shown} at" in reason
            assert len(reason.encode()) <= 123

    run(body())


def test_extended_thinking_takes_non_blocking_functions_and_checks_context_updates() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu, setup_msg(model=EXTENDED, tools=tools_with(behavior="NON_BLOCKING")))
            await ws.send(json.dumps({"contextUpdate": {"tools": {"tools": tools_with(behavior="BLOCKING")}}}))
            code, reason = await closed_with(ws)
            assert code == 1007 and "contextUpdate.tools.tools[0]" in reason, reason
            # the plain 3.8 model takes either behavior
            ws2 = await open_session(emu, setup_msg(tools=tools_with(behavior="BLOCKING")))
            await ws2.close()

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Barge-in variants, interactionStatus, NON_BLOCKING tool turns
# ----------------------------------------------------------------------------------------------------------


async def barge_in_on_first_reply(ws: ClientConnection) -> list[dict[str, Any]]:
    """Start a turn, wait for its first audio, send activityStart; return its messages up to `interrupted`."""
    await send_activity(ws, sine16k(0.2))
    messages = [await recv_json(ws)]
    while "modelTurn" not in messages[-1].get("serverContent", {}):
        messages.append(await recv_json(ws))
    await ws.send(ACTIVITY_START)
    while not messages[-1].get("serverContent", {}).get("interrupted"):
        messages.append(await recv_json(ws))
    return messages


def test_default_barge_in_is_interrupted_then_turn_complete() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=3.0), pace=1.7) as emu:
            ws = await open_session(emu)
            await barge_in_on_first_reply(ws)
            assert (await recv_json(ws))["serverContent"] == {"turnComplete": True}
            await ws.close()
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert (emu.turns[0].ending, emu.turns[0].turn_completes) == ("interrupted", [None])

    run(body())


def test_barge_no_complete_sends_interrupted_only_then_the_next_turn_is_normal() -> None:
    async def body() -> None:
        scenario = Scenario.parse("barge-no-complete", base=Scenario(reply="tone", tone_seconds=3.0))
        async with make_emulator(scenario, pace=1.7) as emu:
            ws = await open_session(emu)
            await barge_in_on_first_reply(ws)
            await ws.send(audio_msg(sine16k(0.1)))
            await ws.send(ACTIVITY_END)
            second = await collect_turn(ws, timeout=10)
            await ws.close()
            # nothing for the cut reply after `interrupted`: the next message is the new turn's transcript
            assert "inputTranscription" in second[0]["serverContent"]
            assert sum(1 for m in second if m.get("serverContent", {}).get("turnComplete")) == 1
            assert any("generationComplete" in m.get("serverContent", {}) for m in second)
            assert len(reply_audio(second)) == 3 * 24000 * 2
            first, nxt = emu.turns
            assert (first.ending, first.turn_completes, first.turn_complete) == (
                "interrupted_no_turn_complete", [], False)
            assert (nxt.ending, nxt.turn_completes) == ("complete", [None])

    run(body())


def test_interaction_status_idle_on_normal_turns_and_interruptions() -> None:
    async def body() -> None:
        scenario = Scenario.from_specs(["tone:3", "interaction-status"])
        async with make_emulator(scenario, pace=1.7) as emu:
            ws = await open_session(emu)
            await barge_in_on_first_reply(ws)
            assert (await recv_json(ws))["serverContent"] == {"turnComplete": True, "interactionStatus": "IDLE"}
            await ws.send(audio_msg(sine16k(0.1)))
            await ws.send(ACTIVITY_END)
            final = (await collect_turn(ws, timeout=10))[-1]
            await ws.close()
            assert final["serverContent"] == {"turnComplete": True, "interactionStatus": "IDLE"}
            assert [t.turn_completes for t in emu.turns] == [["IDLE"], ["IDLE"]]

    run(body())


def content_kinds(messages: list[dict[str, Any]]) -> list[str]:
    """A compact picture of a message sequence: 'audio', 'toolCall', 'turnComplete:IN_PROGRESS', ..."""
    kinds = []
    for m in messages:
        if "toolCall" in m:
            kinds.append("toolCall")
        content = m.get("serverContent", {})
        if "modelTurn" in content and (not kinds or kinds[-1] != "audio"):
            kinds.append("audio")
        if content.get("generationComplete"):
            kinds.append("generationComplete")
        if content.get("turnComplete"):
            status = content.get("interactionStatus")
            kinds.append(f"turnComplete:{status}" if status else "turnComplete")
    return kinds


async def answer(ws: ClientConnection, call: dict[str, Any], **extra: Any) -> None:
    await ws.send(json.dumps({"toolResponse": {"functionResponses": [
        {"id": call["id"], "name": call["name"], "response": {"output": "ok"}, **extra}]}}))


def tool_call_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (call,) = next(m for m in messages if "toolCall" in m)["toolCall"]["functionCalls"]
    return call


@pytest.mark.parametrize("declaration", [{"behavior": "NON_BLOCKING"}, {}], ids=["declared", "3.8 default"])
def test_non_blocking_tool_turn_talks_on_ends_in_progress_then_idle_after_the_response(
        declaration: dict[str, Any]) -> None:
    async def body() -> None:
        scenario = Scenario.parse('tool:set_timer:{"seconds": 60}', base=Scenario(reply="tone", tone_seconds=0.2))
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu, setup_msg(tools=tools_with(**declaration)))
            await send_activity(ws, sine16k(0.1))
            first = await collect_turn(ws)
            assert content_kinds(first) == ["toolCall", "audio", "generationComplete", "turnComplete:IN_PROGRESS"]
            assert first[-1]["serverContent"] == {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}
            await emu.wait_for(lambda e: e.turns[0].turn_completes == ["IN_PROGRESS"], 2)
            turn = emu.turns[0]
            assert (turn.tool_behavior, turn.ending, turn.turn_complete) == ("NON_BLOCKING", None, False)
            await answer(ws, tool_call_of(first), scheduling="WHEN_IDLE")
            second = await collect_turn(ws)
            await ws.close()
            assert content_kinds(second) == ["audio", "generationComplete", "turnComplete:IDLE"]
            assert len(reply_audio(first)) == len(reply_audio(second)) == 0.2 * 24000 * 2
            assert (turn.ending, turn.turn_completes, turn.turn_complete) == (
                "complete", ["IN_PROGRESS", "IDLE"], True)

    run(body())


def test_a_blocking_declaration_wins_over_the_nonblocking_tool_spec() -> None:
    async def body() -> None:
        scenario = Scenario.from_specs(["tone:0.1", "nonblocking-tool:set_timer"])
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu)  # BASE_SETUP declares set_timer BLOCKING
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)
            call = (await recv_json(ws))["toolCall"]["functionCalls"][0]
            await answer(ws, call)
            messages = await collect_turn(ws)
            await ws.close()
            assert content_kinds(messages) == ["audio", "generationComplete", "turnComplete"]
            assert emu.turns[0].tool_behavior == "BLOCKING"

    run(body())


@pytest.mark.parametrize(("model", "behavior"), [
    ("gemini-2.5-flash-native-audio-preview-12-2025", "NON_BLOCKING"),
    ("gemini-3.1-flash-live-preview", "BLOCKING"),  # 3.1 calls synchronously only
])
def test_nonblocking_tool_spec_sets_the_default_for_declarations_without_behavior(model: str,
                                                                                  behavior: str) -> None:
    async def body() -> None:
        scenario = Scenario.from_specs(["tone:0.1", 'nonblocking-tool:set_timer:{"seconds": 5}'])
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu, setup_msg(model=f"models/{model}", tools=tools_with()))
            await send_activity(ws, sine16k(0.1))
            await recv_json(ws)
            call = (await recv_json(ws))["toolCall"]["functionCalls"][0]
            await emu.wait_for(lambda e: e.turns[0].tool_behavior is not None, 2)
            assert emu.turns[0].tool_behavior == behavior
            await answer(ws, call)
            await emu.wait_for(lambda e: e.turns[0].ended, 5)
            await ws.close()

    run(body())


def test_non_blocking_call_survives_a_new_turn_and_its_result_is_spoken_afterwards() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=0.2, tool_calls=[("set_timer", {"seconds": 5})])
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu, setup_msg(tools=tools_with(behavior="NON_BLOCKING")))
            await send_activity(ws, sine16k(0.1))
            first = await collect_turn(ws)
            call = tool_call_of(first)
            # the user speaks while the tool runs: nothing is playing, so nothing is interrupted
            await send_activity(ws, sine16k(0.1))
            second = await collect_turn(ws)
            assert not any(m.get("serverContent", {}).get("interrupted") for m in second)
            assert not any("toolCallCancellation" in m for m in second)
            assert content_kinds(second) == ["toolCall", "audio", "generationComplete", "turnComplete:IN_PROGRESS"]
            await answer(ws, call)
            result = await collect_turn(ws)
            assert content_kinds(result) == ["audio", "generationComplete", "turnComplete:IDLE"]
            await ws.close()
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert [t.ending for t in emu.turns] == ["complete", "disconnected"]  # the second call never answered

    run(body())


def test_silent_scheduling_ends_idle_without_more_audio_and_will_continue_keeps_the_call_open() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=0.1, tool_calls=[("set_timer", {})])
        async with make_emulator(scenario) as emu:
            ws = await open_session(emu, setup_msg(tools=tools_with(behavior="NON_BLOCKING")))
            await send_activity(ws, sine16k(0.1))
            call = tool_call_of(await collect_turn(ws))
            await answer(ws, call, willContinue=True, scheduling="SILENT")
            await emu.wait_for(lambda e: len(e.turns[0].tool_responses) == 1, 2)
            assert emu.turns[0].ending is None  # still waiting: the call will continue
            await answer(ws, call, scheduling="SILENT")
            (final,) = await collect_turn(ws)
            await ws.close()
            assert final["serverContent"] == {"turnComplete": True, "interactionStatus": "IDLE"}
            assert emu.turns[0].turn_completes == ["IN_PROGRESS", "IDLE"]

    run(body())


def test_barge_in_during_a_non_blocking_turn_keeps_the_call_and_says_in_progress() -> None:
    async def body() -> None:
        scenario = Scenario(reply="tone", tone_seconds=3.0, tool_calls=[("set_timer", {})])
        async with make_emulator(scenario, pace=1.7) as emu:
            ws = await open_session(emu, setup_msg(tools=tools_with(behavior="NON_BLOCKING")))
            cut = await barge_in_on_first_reply(ws)
            call = tool_call_of(cut)
            assert (await recv_json(ws))["serverContent"] == {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}
            assert emu.turns[0].cancelled_tool_calls == []
            await answer(ws, call, scheduling="SILENT")
            (final,) = await collect_turn(ws)
            assert final["serverContent"]["interactionStatus"] == "IDLE"
            await ws.close()
            assert emu.turns[0].interrupted and emu.turns[0].ending == "complete"

    run(body())


# ----------------------------------------------------------------------------------------------------------
# Faults injected now (Emulator methods) and drop-mid-reply
# ----------------------------------------------------------------------------------------------------------


async def audio_until_closed(ws: ClientConnection) -> int:
    """Count reply audio chunks until the connection ends."""
    chunks = 0
    with pytest.raises(ConnectionClosed):
        while True:
            if "modelTurn" in (await recv_json(ws)).get("serverContent", {}):
                chunks += 1
    return chunks


def test_drop_mid_reply_spec_cuts_the_first_connections_reply_at_the_fraction() -> None:
    async def body() -> None:
        scenario = Scenario.from_specs(["tone:1", "drop-mid-reply:0.4", "fault-connections:1"])
        async with make_emulator(scenario) as emu:
            ws, handle = await resumable_session(emu)
            await send_activity(ws, sine16k(0.1))
            chunks = await audio_until_closed(ws)
            assert ws.close_code == 1006 and chunks == 10  # 40 % of 25 chunks of 40 ms
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert (emu.connections[0].close_code, emu.turns[0].ending) == (1006, "disconnected")
            ws2, _ = await resumable_session(emu, handle)
            await send_activity(ws2, sine16k(0.1))
            assert len(reply_audio(await collect_turn(ws2))) == 24000 * 2
            await ws2.close()

    run(body())


def test_drop_mid_reply_method_applies_to_the_reply_under_way() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=2.0), pace=1.7) as emu:
            ws = await open_session(emu)
            await send_activity(ws, sine16k(0.1))
            while "modelTurn" not in (await recv_json(ws)).get("serverContent", {}):
                pass
            assert await emu.drop_mid_reply(0.5) == 1
            chunks = 1 + await audio_until_closed(ws)
            assert ws.close_code == 1006 and chunks == 25  # half of 50 chunks
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            assert emu.connections[0].closed_by == "server"
            with pytest.raises(ValueError):
                await emu.drop_mid_reply(1.5)

    run(body())


def test_send_go_away_now_then_deadline_expired() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws = await open_session(emu)
            assert await emu.send_go_away(0.2) == 1
            assert await recv_json(ws) == {"goAway": {"timeLeft": "0.2s"}}
            started = time.monotonic()
            assert await closed_with(ws) == (1011, "Deadline expired before operation could complete.")
            assert time.monotonic() - started >= 0.15
            with pytest.raises(ValueError):
                await emu.send_go_away(-1)

    run(body())


def test_send_malformed_now_and_the_session_carries_on() -> None:
    async def body() -> None:
        async with make_emulator(Scenario(reply="tone", tone_seconds=0.1)) as emu:
            ws = await open_session(emu)
            assert await emu.send_malformed() == 1
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            with pytest.raises(json.JSONDecodeError):
                json.loads(frame)
            await send_activity(ws, sine16k(0.1))
            assert len(reply_audio(await collect_turn(ws))) == 0.1 * 24000 * 2
            await ws.close()

    run(body())


def test_close_1011_now_targets_one_connection_or_all() -> None:
    async def body() -> None:
        async with make_emulator() as emu:
            ws1, ws2 = await open_session(emu), await open_session(emu)
            assert await emu.close_1011(conn_id=emu.connections[0].id) == 1
            assert await closed_with(ws1) == (1011, "Internal error encountered.")
            await emu.wait_for(lambda e: e.connections[0].closed, 2)
            with pytest.raises(ValueError, match="not open"):
                await emu.close_1011(conn_id=emu.connections[0].id)
            assert await emu.close_1011("The service is currently unavailable.") == 1
            assert await closed_with(ws2) == (1011, "The service is currently unavailable.")

    run(body())


# ----------------------------------------------------------------------------------------------------------
# New scenario specs
# ----------------------------------------------------------------------------------------------------------


def test_new_scenario_specs_parse() -> None:
    s = Scenario.from_specs(["barge-no-complete", "interaction-status", "drop-mid-reply:0.4",
                             'nonblocking-tool:set_timer:{"seconds": 5}', "tool:get_time"])
    assert (s.barge_in_turn_complete, s.interaction_status, s.drop_mid_reply) == (False, True, 0.4)
    assert s.tool_calls == [("set_timer", {"seconds": 5}), ("get_time", {})] and s.non_blocking_tools
    plain = Scenario.parse("tool:get_time")
    assert not plain.non_blocking_tools and plain.barge_in_turn_complete and not plain.interaction_status
    assert plain.drop_mid_reply is None
    for spec in ("barge-no-complete", "interaction-status", "drop-mid-reply", "nonblocking-tool"):
        assert spec in SCENARIO_HELP


@pytest.mark.parametrize("spec", ["drop-mid-reply:1.5", "drop-mid-reply:x", "drop-mid-reply:-0.1",
                                  "nonblocking-tool:", "nonblocking-tool:f:[1]", "barge-no-complete:1",
                                  "interaction-status:yes"])
def test_bad_new_scenario_specs_are_one_clear_line(spec: str) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.parse(spec)
    assert "\n" not in str(info.value) and spec.split(":")[0] in str(info.value)
    with pytest.raises(ScenarioError):
        Scenario(drop_mid_reply=2.0)
