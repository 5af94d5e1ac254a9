"""Oracle tests: the real `google-genai` SDK (a test-only dependency) judges our Live API traffic.

Why: our client builders and our emulator were both written from the same protocol notes. If both
misread a field, every other test still passes. The SDK's pydantic types and its live client are an
independent reading of the wire format, so here they check
  1. every client message our builders in `appliance.live.messages` produce,
  2. every message the emulator sends (captured with a bare websocket client), and
  3. that the SDK's own live client can hold a conversation with the emulator.

How strict the SDK types are (google-genai 3.4.0, `_common.BaseModel.model_config`):
  - `extra='forbid'`: an unknown or misplaced field name fails validation (good);
  - but `populate_by_name=True`: snake_case field names pass as well as the camelCase aliases;
  - lax coercion: "true" passes as a bool, "12" as an int;
  - an unknown enum value only raises a UserWarning (`CaseInSensitiveEnum._missing_`).
So `assert_sdk_accepts` (a) parses the JSON text as it travels on the wire, which makes pydantic check
bytes fields as base64, (b) turns warnings into errors, and (c) compares the SDK's alias (camelCase) dump of
what it parsed with what was sent: a snake_case, renamed or coerced field shows up as a difference. The
negative controls below prove each of these catches is real.

Everything runs on 127.0.0.1 with proxies switched off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import datetime
import enum
import ipaddress
import json
import os
import re
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from cryptography import x509  # a dependency of google-auth, which google-genai requires
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google import genai
from google.genai import types
from websockets.asyncio.client import ClientConnection, connect

from appliance.live import messages as protocol
from appliance.live.parser import parse_duration
from appliance.emulator.server import DEFAULT_MODELS, Emulator, EmulatorConfig, Scenario
from appliance.live.profiles import known_models, profile_for

WAIT_S = 5.0  # upper bound for any single wait; a healthy run takes milliseconds
API_KEY = "test-key"
UNKNOWN_MODEL = "gemini-9.9-live-unreleased"

# proto3 JSON writes 64-bit integers as strings; both the service and the SDK accept either form
INT64_FIELDS = frozenset({"lastConsumedClientMessageIndex", "triggerTokens", "targetTokens"})

# SDK 3.4.0 gap: `LiveClientSetup` has no `realtime_input_config` field, although the SDK's own converter
# (`_live_converters._LiveConnectConfig_to_mldev`) writes `setup.realtimeInputConfig` on the wire. That
# part of a setup is therefore checked against the SDK's `RealtimeInputConfig` type on its own, and
# `test_sdk_live_client_sends_the_same_setup_as_our_builder` confirms where the SDK puts it.
_SETUP_TYPE_KNOWS_REALTIME_INPUT_CONFIG = "realtime_input_config" in types.LiveClientSetup.model_fields


# --------------------------------------------------------------------------------------------------------
# Strict validation against the SDK types


def _is_standard_base64(text: str) -> bool:
    """The canonical proto3 JSON form: standard alphabet, padded (what our builders promise to send)."""
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode("ascii") == text
    except (binascii.Error, ValueError):
        return False


def _differences(sent: Any, parsed: Any, path: str) -> list[str]:
    """Where the SDK's reading of a message differs from what was sent."""
    if isinstance(parsed, enum.Enum):
        parsed = parsed.value
    if isinstance(sent, dict) and isinstance(parsed, dict):
        found = [f"{path}.{key}: not an SDK field name as spelled (snake_case or renamed?)"
                 for key in sent.keys() - parsed.keys()]
        found += [f"{path}.{key}: appeared only after parsing" for key in parsed.keys() - sent.keys()]
        for key in sent.keys() & parsed.keys():
            found += _differences(sent[key], parsed[key], f"{path}.{key}")
        return found
    if isinstance(sent, list) and isinstance(parsed, list):
        if len(sent) != len(parsed):
            return [f"{path}: {len(sent)} items sent, {len(parsed)} after parsing"]
        return [d for i, (a, b) in enumerate(zip(sent, parsed)) for d in _differences(a, b, f"{path}[{i}]")]
    if isinstance(parsed, bytes):  # a bytes field: dumped in Python mode, so we see the decoded value
        if not isinstance(sent, str) or not _is_standard_base64(sent):
            return [f"{path}: bytes must be standard padded base64, got {str(sent)[:40]!r}"]
        return [] if base64.b64decode(sent) == parsed else [f"{path}: base64 decodes to other bytes"]
    if type(sent) is type(parsed) and sent == parsed:
        return []
    if isinstance(sent, int) and not isinstance(sent, bool) and isinstance(parsed, float) and sent == parsed:
        return []  # JSON has one number type; 1 for a float field is fine
    last = path.rsplit(".", 1)[-1]
    if isinstance(sent, str) and isinstance(parsed, int) and last in INT64_FIELDS and sent == str(parsed):
        return []
    return [f"{path}: sent {sent!r}, the SDK read {parsed!r} (coerced)"]


def assert_sdk_accepts(model: type[pydantic.BaseModel], message: dict[str, Any], where: str = "") -> None:
    """Fail unless `model` parses `message` strictly: no unknown, renamed, coerced or dropped field."""
    text = json.dumps(message)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unknown enum values only warn inside the SDK
            parsed = model.model_validate_json(text)
    except (ValueError, UserWarning) as exc:  # pydantic.ValidationError is a ValueError
        raise AssertionError(f"{model.__name__} rejects {where or 'message'}: {exc}\n{text[:400]}") from None
    dumped = parsed.model_dump(mode="python", by_alias=True, exclude_unset=True)
    problems = _differences(message, dumped, where or model.__name__)
    if problems:
        raise AssertionError(f"{model.__name__} reads the message differently:\n  " + "\n  ".join(problems)
                             + f"\n{text[:400]}")


def assert_client_message_ok(message: dict[str, Any]) -> None:
    """A message our client may put on the wire: one top-level key, strictly a LiveClientMessage."""
    assert len(message) == 1, f"a client message has exactly one top-level key, got {sorted(message)}"
    body = copy.deepcopy(message)
    setup = body.get("setup")
    if isinstance(setup, dict) and "realtimeInputConfig" in setup and not _SETUP_TYPE_KNOWS_REALTIME_INPUT_CONFIG:
        assert_sdk_accepts(types.RealtimeInputConfig, setup.pop("realtimeInputConfig"),
                           "setup.realtimeInputConfig")
    assert_sdk_accepts(types.LiveClientMessage, body)


def assert_server_message_ok(message: dict[str, Any]) -> None:
    assert_sdk_accepts(types.LiveServerMessage, message)


# --------------------------------------------------------------------------------------------------------
# Part 1: our builders


SET_TIMER = {
    "name": "set_timer",
    "description": "Start a kitchen timer",
    "parameters": {
        "type": "OBJECT",
        "properties": {"minutes": {"type": "INTEGER", "description": "how long"},
                       "label": {"type": "STRING"}},
        "required": ["minutes"],
    },
}
STOP_TIMERS = {"name": "stop_timers", "description": "Stop every running timer"}

SETTINGS_VARIANTS: dict[str, dict[str, Any]] = {
    "minimal": {},
    "full": {"voice": "Puck", "language": "de-DE", "system_instruction": "Be brief.",
             "functions": (SET_TIMER, STOP_TIMERS), "google_search": True},
    "search-only": {"google_search": True, "input_transcription": False, "output_transcription": False},
    "functions-only": {"functions": (SET_TIMER,), "compression_trigger_tokens": 9000,
                       "compression_target_tokens": 3000},
}
ALL_MODELS = (*known_models(), UNKNOWN_MODEL)


def _settings(model: str, variant: str) -> protocol.SessionSettings:
    return protocol.SessionSettings(model=model, **SETTINGS_VARIANTS[variant])


@pytest.mark.parametrize("resume_handle", [None, "Cj8resume-handle_1"], ids=["fresh", "resumed"])
@pytest.mark.parametrize("variant", sorted(SETTINGS_VARIANTS))
@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_setup_we_build_is_a_valid_sdk_client_message(model: str, variant: str,
                                                            resume_handle: str | None) -> None:
    message = protocol.build_setup(_settings(model, variant), profile_for(model), resume_handle)
    assert_client_message_ok(message)
    assert message["setup"]["sessionResumption"] == ({"handle": resume_handle} if resume_handle else {})


def _pcm(samples: int, amplitude: int = 12000) -> bytes:
    """A sine wave; its bytes include 0xfb/0xff so the base64 text contains '+' and '/'."""
    wave = amplitude * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)
    return wave.astype("<i2").tobytes()


REALTIME_AND_TURN_MESSAGES: dict[str, Callable[[], dict[str, Any]]] = {
    "activity_start": protocol.activity_start,
    "activity_end": protocol.activity_end,
    "audio_16k": lambda: protocol.audio_input(_pcm(1600)),
    "audio_24k": lambda: protocol.audio_input(_pcm(960), rate=24000),
    "audio_plus_slash": lambda: protocol.audio_input(b"\xfb\xff\xfe\xff" * 8),
    "text": lambda: protocol.text_input("Wie lange kocht ein Ei?"),
    "text_turn_text": lambda: protocol.text_turn("Wie lange kocht ein Ei?")[1],
    "tool_response_with_nulls_left_out": lambda: protocol.tool_response(
        [protocol.FunctionResponse("fc-4", "set_timer", {"output": {"label": None, "minutes": 5}, "error": None})]),
    "tool_response": lambda: protocol.tool_response(
        [protocol.FunctionResponse("fc-1", "set_timer", {"output": {"status": "started", "minutes": 5}})]),
    "tool_response_non_blocking": lambda: protocol.tool_response([
        protocol.FunctionResponse("fc-2", "set_timer", {"output": "ok"}, scheduling="WHEN_IDLE",
                                  will_continue=False),
        protocol.FunctionResponse("fc-3", "stop_timers", {"error": "none running"}, scheduling="SILENT",
                                  will_continue=True),
    ]),
    "client_content_history": lambda: protocol.client_content(
        [("user", "Set a timer"), ("model", "For how long?")], turn_complete=False),
    "client_content_complete": lambda: protocol.client_content([]),
}


@pytest.mark.parametrize("name", sorted(REALTIME_AND_TURN_MESSAGES))
def test_every_other_client_message_we_build_is_a_valid_sdk_client_message(name: str) -> None:
    assert_client_message_ok(REALTIME_AND_TURN_MESSAGES[name]())


# Each of these is wrong in one way; the oracle must reject every one, or it proves nothing.
CLIENT_NEGATIVE_CONTROLS: dict[str, tuple[dict[str, Any], str]] = {
    "modalities beside generationConfig": (
        {"setup": {"responseModalities": ["AUDIO"], "model": "models/x"}}, "responseModalities"),
    "misspelt nested field": (
        {"setup": {"model": "models/x", "generationConfig": {"responseModality": ["AUDIO"]}}}, "responseModality"),
    "unknown field in an empty message": ({"realtimeInput": {"activityStart": {"now": True}}}, "now"),
    "snake_case names": ({"realtime_input": {"activity_start": {}}}, "realtime_input"),
    "unknown enum value": (
        {"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["SPEECH"]}}}, "SPEECH"),
    "string for a bool": (
        {"toolResponse": {"functionResponses": [{"id": "1", "name": "f", "response": {},
                                                 "willContinue": "false"}]}}, "willContinue"),
    "url-safe base64": (
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "-_-_"}}}, "base64"),
    "not base64": (
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "no base64!"}}}, "base64"),
    "typo inside realtimeInputConfig": (
        {"setup": {"model": "models/x", "realtimeInputConfig": {"automaticActivityDetection": {"disable": True}}}},
        "disable"),
    "legacy top-level config": ({"config": {"model": "models/x"}}, "config"),
}


@pytest.mark.parametrize("name", sorted(CLIENT_NEGATIVE_CONTROLS))
def test_oracle_rejects_wrong_client_messages(name: str) -> None:
    message, culprit = CLIENT_NEGATIVE_CONTROLS[name]
    with pytest.raises(AssertionError, match=culprit):
        assert_client_message_ok(message)


SERVER_NEGATIVE_CONTROLS: dict[str, tuple[dict[str, Any], str]] = {
    "string for a bool": ({"serverContent": {"turnComplete": "true"}}, "turnComplete"),
    "snake_case nested name": (
        {"serverContent": {"modelTurn": {"parts": [{"inline_data": {"mimeType": "audio/pcm;rate=24000",
                                                                     "data": "AAA="}}]}}}, "inline_data"),
    "unknown top-level message": ({"emulatorUnknownMessage": {"note": "x"}}, "emulatorUnknownMessage"),
    "number for a duration": ({"goAway": {"timeLeft": 50}}, "timeLeft"),
    "unknown enum value": ({"serverContent": {"turnComplete": True, "interactionStatus": "DONE"}}, "DONE"),
}


@pytest.mark.parametrize("name", sorted(SERVER_NEGATIVE_CONTROLS))
def test_oracle_rejects_wrong_server_messages(name: str) -> None:
    message, culprit = SERVER_NEGATIVE_CONTROLS[name]
    with pytest.raises(AssertionError, match=culprit):
        assert_server_message_ok(message)


def test_oracle_accepts_int64_written_as_a_string() -> None:
    """proto3 JSON's int64 form must not be reported as a coercion; a non-number still is."""
    assert_server_message_ok({"sessionResumptionUpdate": {"newHandle": "h", "resumable": True,
                                                          "lastConsumedClientMessageIndex": "12"}})
    with pytest.raises(AssertionError):
        assert_server_message_ok({"usageMetadata": {"totalTokenCount": "12"}})  # int32: a number on the wire


# --------------------------------------------------------------------------------------------------------
# Part 2: everything the emulator sends, captured with a bare websocket client


class RawLiveClient:
    """A bare websocket client that checks every server frame against the SDK as it arrives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(protocol.encode(message))

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            frame = await self.ws.recv()
        assert isinstance(frame, bytes), f"server messages travel in binary frames, got text {frame[:80]!r}"
        message = json.loads(frame)
        assert_server_message_ok(message)
        self.frames.append(message)
        return message

    async def receive_until(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        got = []
        while True:
            message = await self.receive()
            got.append(message)
            if predicate(message):
                return got

    async def audio_turn(self, pcm: bytes) -> None:
        await self.send(protocol.activity_start())
        await self.send(protocol.audio_input(pcm))
        await self.send(protocol.activity_end())


def _turn_complete(message: dict[str, Any]) -> bool:
    return bool(message.get("serverContent", {}).get("turnComplete"))


def _content_keys(messages: list[dict[str, Any]]) -> set[str]:
    return {key for m in messages for key in m.get("serverContent", {})}


def _audio_bytes(messages: list[dict[str, Any]]) -> int:
    return sum(len(base64.b64decode(part["inlineData"]["data"]))
               for m in messages for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))


@contextlib.asynccontextmanager
async def raw_session(emu: Emulator, settings: protocol.SessionSettings,
                      resume_handle: str | None = None) -> AsyncIterator[RawLiveClient]:
    async with connect(emu.url, additional_headers={"x-goog-api-key": API_KEY}, proxy=None) as ws:
        client = RawLiveClient(ws)
        await client.send(protocol.build_setup(settings, profile_for(settings.model), resume_handle))
        first = await client.receive()
        assert "setupComplete" in first, f"expected setupComplete first, got {first}"
        yield client


FULL_SETTINGS = protocol.SessionSettings(model="gemini-3.8-live", system_instruction="Be brief.",
                                         functions=(SET_TIMER, STOP_TIMERS))


@pytest.mark.parametrize("reply", ["echo", "tone"])
def test_emulator_turn_messages_are_valid_sdk_server_messages(reply: str) -> None:
    async def scenario() -> None:
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply=reply, tone_seconds=0.2)) as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                await client.receive_until(lambda m: "sessionResumptionUpdate" in m)
                await client.audio_turn(_pcm(1600))
                audio_turn = await client.receive_until(_turn_complete)
                await client.receive_until(lambda m: "sessionResumptionUpdate" in m)
                for message in protocol.text_turn("How long for a soft egg?"):
                    await client.send(message)
                text_turn = await client.receive_until(_turn_complete)
                await client.send(protocol.client_content([("user", "And a hard one?")]))
                content_turn = await client.receive_until(_turn_complete)
            assert emu.internal_errors == []

        expected_reply = 2 * (2400 if reply == "echo" else 4800)  # 0.1 s echoed or 0.2 s tone, at 24 kHz
        assert _audio_bytes(audio_turn) == expected_reply
        for turn in (audio_turn, text_turn, content_turn):
            assert {"modelTurn", "inputTranscription", "outputTranscription", "generationComplete",
                    "turnComplete"} <= _content_keys(turn)
            assert "usageMetadata" in turn[-1]
        kinds = {key for m in client.frames for key in m}
        assert kinds == {"setupComplete", "serverContent", "usageMetadata", "sessionResumptionUpdate"}

    asyncio.run(scenario())


def test_emulator_tool_call_and_cancellation_are_valid_sdk_server_messages() -> None:
    async def scenario() -> None:
        emulator = Emulator(EmulatorConfig(pace=0),
                            Scenario(reply="tone", tone_seconds=0.1, tool_calls=[("set_timer", {"minutes": 5})]))
        async with emulator as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                # answered call
                await client.audio_turn(_pcm(1600))
                (*_, call_message) = await client.receive_until(lambda m: "toolCall" in m)
                (call,) = call_message["toolCall"]["functionCalls"]
                assert (call["name"], call["args"]) == ("set_timer", {"minutes": 5})
                await client.send(protocol.tool_response(
                    [protocol.FunctionResponse(call["id"], call["name"], {"output": {"status": "started"}})]))
                answered = await client.receive_until(_turn_complete)
                # unanswered call, cut off by the user speaking again
                await client.audio_turn(_pcm(1600))
                (*_, call_message) = await client.receive_until(lambda m: "toolCall" in m)
                (call,) = call_message["toolCall"]["functionCalls"]
                await client.send(protocol.activity_start())
                cancelled = await client.receive_until(_turn_complete)
            assert emu.internal_errors == []

        assert _audio_bytes(answered) > 0
        assert {"interrupted"} <= _content_keys(cancelled)
        assert [m["toolCallCancellation"]["ids"] for m in cancelled if "toolCallCancellation" in m] == [[call["id"]]]

    asyncio.run(scenario())


def test_emulator_barge_in_messages_are_valid_sdk_server_messages() -> None:
    async def scenario() -> None:
        # real-time pacing, so a 30 s reply is certainly still running when the user barges in
        async with Emulator(EmulatorConfig(pace=1.0), Scenario(reply="tone", tone_seconds=30)) as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                await client.audio_turn(_pcm(1600))
                await client.receive_until(lambda m: "modelTurn" in m.get("serverContent", {}))
                await client.send(protocol.activity_start())
                after = await client.receive_until(_turn_complete)
                await client.receive_until(lambda m: "sessionResumptionUpdate" in m)
            assert emu.internal_errors == []
            assert emu.turns[0].interrupted

        assert "interrupted" in _content_keys(after)
        assert "generationComplete" not in _content_keys(after)

    asyncio.run(scenario())


def test_emulator_go_away_is_a_valid_sdk_server_message() -> None:
    async def scenario() -> None:
        config = EmulatorConfig(pace=0, connection_lifetime_s=0.5, goaway_grace_s=0.1)
        async with Emulator(config, Scenario()) as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                (*_, go_away) = await client.receive_until(lambda m: "goAway" in m)
                async with asyncio.timeout(WAIT_S):
                    await client.ws.wait_closed()
            assert emu.internal_errors == []

        assert parse_duration(go_away["goAway"]["timeLeft"]) == pytest.approx(0.1)
        assert client.ws.close_code == 1011

    asyncio.run(scenario())


def test_emulator_resumption_messages_are_valid_sdk_server_messages() -> None:
    async def scenario() -> None:
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.1)) as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                (*_, update) = await client.receive_until(lambda m: "sessionResumptionUpdate" in m)
                await client.audio_turn(_pcm(1600))
                await client.receive_until(_turn_complete)
                (*_, update) = await client.receive_until(lambda m: "sessionResumptionUpdate" in m)
            handle = update["sessionResumptionUpdate"]["newHandle"]
            await emu.wait_for(lambda e: e.connections[0].closed, WAIT_S)

            async with raw_session(emu, FULL_SETTINGS, resume_handle=handle) as resumed:
                (*_, update) = await resumed.receive_until(lambda m: "sessionResumptionUpdate" in m)
            assert update["sessionResumptionUpdate"]["resumable"] is True
            assert emu.connections[1].resumed_handle == handle
            assert emu.connections[1].restored_turns == 1
            assert emu.internal_errors == []

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------------
# Part 3: the SDK's own live client against the emulator
#
# The SDK always turns base_url into wss:// when it has an API key (`_websocket_base_url` replaces the
# scheme), so it cannot speak plain ws to the emulator. Rather than patch the SDK, the tests put a
# loopback TLS terminator in front of the emulator, with a throwaway self-signed certificate that the SDK
# is told to trust through `HttpOptions.async_client_args={"ssl": ...}`. The SDK's ws_connect uses the
# websockets default `proxy=True`, so the proxy environment is cleared for these tests.


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _write_certificate(directory: Path) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 (EC, so it takes milliseconds)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _write_certificate(tmp_path_factory.mktemp("oracle-tls"))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tls_front(emu: Emulator, tls: tuple[str, str]) -> AsyncIterator[str]:
    """A wss:// entrance on 127.0.0.1 that relays bytes to the emulator; yields its https base URL."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*tls)
    relays: set[asyncio.Task[Any]] = set()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            emu_r, emu_w = await asyncio.open_connection("127.0.0.1", emu.port)
            await asyncio.gather(_pipe(client_r, emu_w), _pipe(emu_r, client_w), return_exceptions=True)
        finally:
            relays.discard(task)

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=server_ctx)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()


def _sdk_client(base_url: str, tls: tuple[str, str]) -> genai.Client:
    trust = ssl.create_default_context(cafile=tls[0])
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(
        base_url=base_url, api_version="v1beta", async_client_args={"ssl": trust}))


MANUAL_ACTIVITY = types.RealtimeInputConfig(
    automatic_activity_detection=types.AutomaticActivityDetection(disabled=True))


def test_sdk_live_client_completes_an_audio_turn_with_the_emulator(no_proxy: None,
                                                                   tls_files: tuple[str, str]) -> None:
    async def scenario() -> None:
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="echo")) as emu, tls_front(emu, tls_files) as url:
            client = _sdk_client(url, tls_files)
            config = types.LiveConnectConfig(response_modalities=["AUDIO"], realtime_input_config=MANUAL_ACTIVITY)
            audio = bytearray()
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                await session.send_realtime_input(activity_start=types.ActivityStart())
                await session.send_realtime_input(audio=types.Blob(data=_pcm(1600), mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                async with asyncio.timeout(WAIT_S):
                    async for message in session.receive():
                        audio += message.data or b""
                        if message.server_content and message.server_content.turn_complete:
                            break
            await emu.wait_for(lambda e: e.connections[0].closed, WAIT_S)

            record = emu.connections[0]
            assert (record.api_version, record.has_key, record.key_in_url) == ("v1beta", True, False)
            assert (record.closed_by, record.close_code) == ("client", 1000), emu.describe()
            assert [r.kind for r in emu.received] == ["setup", "realtimeInput", "realtimeInput", "realtimeInput"]
            assert len(emu.turns[0].user_pcm) == 3200
            assert bytes(audio) == bytes(emu.turns[0].reply_pcm) and len(audio) == 4800
            assert emu.internal_errors == []

    asyncio.run(scenario())


def test_sdk_live_client_tool_call_media_chunks_and_client_content_with_the_emulator(
        no_proxy: None, tls_files: tuple[str, str]) -> None:
    """The SDK's other send paths (mediaChunks, snake_case tool_response/client_content) must be accepted.

    mediaChunks is deprecated from 3.1 on (closes 1007 there), so this runs on the 2.5 model, which also
    schedules a declaration without `behavior` as BLOCKING.
    """
    async def scenario() -> None:
        scene = Scenario(reply="tone", tone_seconds=0.1, tool_calls=[("set_timer", {"minutes": 5})])
        async with Emulator(EmulatorConfig(pace=0), scene) as emu, tls_front(emu, tls_files) as url:
            client = _sdk_client(url, tls_files)
            config = types.LiveConnectConfig(
                response_modalities=["AUDIO"], realtime_input_config=MANUAL_ACTIVITY,
                input_audio_transcription=types.AudioTranscriptionConfig(),
                tools=[types.Tool(function_declarations=[types.FunctionDeclaration(**SET_TIMER)])])
            calls: list[types.FunctionCall] = []
            turns: list[bytes] = []
            model = "gemini-2.5-flash-native-audio-preview-12-2025"
            async with client.aio.live.connect(model=model, config=config) as session:

                async def one_turn() -> None:
                    audio = bytearray()
                    async with asyncio.timeout(WAIT_S):
                        async for message in session.receive():
                            audio += message.data or b""
                            if message.tool_call:
                                for call in message.tool_call.function_calls or []:
                                    calls.append(call)
                                    await session.send_tool_response(function_responses=[types.FunctionResponse(
                                        id=call.id, name=call.name, response={"output": "started"})])
                            if message.server_content and message.server_content.turn_complete:
                                break
                    turns.append(bytes(audio))

                await session.send_realtime_input(activity_start=types.ActivityStart())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # `media` is the legacy mediaChunks path
                    await session.send_realtime_input(media=types.Blob(data=_pcm(1600),
                                                                       mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                await one_turn()
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text="Thanks")]), turn_complete=True)
                await one_turn()
            await emu.wait_for(lambda e: e.connections[0].closed, WAIT_S)

            assert [(c.name, c.args) for c in calls] == [("set_timer", {"minutes": 5})] * 2
            assert [len(t) for t in turns] == [4800, 4800]
            assert [len(t.tool_responses) for t in emu.turns] == [1, 1]
            assert len(emu.turns[0].user_pcm) == 3200
            assert emu.turns[1].source == "clientContent"
            assert (emu.connections[0].closed_by, emu.connections[0].close_code) == ("client", 1000), emu.describe()
            assert emu.internal_errors == []

    asyncio.run(scenario())


_OPAQUE = {"args", "response", "properties"}  # caller data: keys keep their spelling
_SNAKE = re.compile(r"_([a-z0-9])")


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_SNAKE.sub(lambda m: m.group(1).upper(), k): (v if k in _OPAQUE else _camel_keys(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def _sdk_config_from(setup: dict[str, Any]) -> types.LiveConnectConfig:
    """Our setup, re-expressed as the SDK's flat LiveConnectConfig (which forbids unknown fields)."""
    fields = {k: v for k, v in setup.items() if k not in ("model", "generationConfig")}
    fields.update(setup.get("generationConfig", {}))
    return types.LiveConnectConfig.model_validate(fields)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_sdk_live_client_sends_the_same_setup_as_our_builder(model: str, no_proxy: None,
                                                              tls_files: tuple[str, str]) -> None:
    """Given the same intent, the SDK nests every field where we do (it differs only in key casing).

    This also confirms that `realtimeInputConfig` sits directly under `setup`, which the SDK's
    `LiveClientSetup` type cannot tell us.
    """
    ours = protocol.build_setup(_settings(model, "full"), profile_for(model))

    async def scenario() -> dict[str, Any]:
        config = EmulatorConfig(pace=0, models=DEFAULT_MODELS | {UNKNOWN_MODEL})
        async with Emulator(config, Scenario()) as emu, tls_front(emu, tls_files) as url:
            client = _sdk_client(url, tls_files)
            async with client.aio.live.connect(model=model, config=_sdk_config_from(ours["setup"])):
                pass
            await emu.wait_for(lambda e: e.connections[0].closed, WAIT_S)
            assert emu.connections[0].close_code == 1000, emu.describe()
            sent = emu.received[0].message
            assert sent is not None
            return sent

    theirs = _camel_keys(asyncio.run(scenario()))
    # Some SDK paths mark the system instruction as a user turn; the service takes it either way.
    if "systemInstruction" in theirs["setup"]:
        assert theirs["setup"]["systemInstruction"].pop("role", "user") == "user"
    # The SDK lists built-in tools before function declarations; the order of `tools` carries no meaning.
    for setup in (theirs["setup"], ours["setup"]):
        if "tools" in setup:
            setup["tools"] = sorted(setup["tools"], key=lambda tool: json.dumps(tool, sort_keys=True))
    assert theirs == ours


def test_sdk_media_chunks_path_is_refused_on_3_8(no_proxy: None, tls_files: tuple[str, str]) -> None:
    """The SDK still has the legacy `media=` path; on 3.8 the emulator must close 1007 on it, as reported."""
    async def scenario() -> None:
        async with Emulator(EmulatorConfig(pace=0), Scenario()) as emu, tls_front(emu, tls_files) as url:
            client = _sdk_client(url, tls_files)
            config = types.LiveConnectConfig(response_modalities=["AUDIO"], realtime_input_config=MANUAL_ACTIVITY)
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                await session.send_realtime_input(activity_start=types.ActivityStart())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    await session.send_realtime_input(media=types.Blob(data=_pcm(160),
                                                                       mime_type="audio/pcm;rate=16000"))
                await emu.wait_for(lambda e: e.connections[0].closed, WAIT_S)
            record = emu.connections[0]
            assert (record.closed_by, record.close_code) == ("server", 1007)
            assert record.close_reason is not None and "mediaChunks is deprecated" in record.close_reason
            assert emu.internal_errors == []

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------------
# Part 4: the newer server sequences (interactionStatus, NON_BLOCKING tools, barge-in variants, injected
# goAway) must be valid SDK server messages too


def _statuses(messages: list[dict[str, Any]]) -> list[str | None]:
    return [m["serverContent"].get("interactionStatus") for m in messages if _turn_complete(m)]


def test_emulator_non_blocking_tool_turn_is_valid_sdk_server_messages() -> None:
    """Our builder on the extended-thinking model declares NON_BLOCKING; the emulator accepts it and runs the
    async flow: toolCall, talk, turnComplete IN_PROGRESS, toolResponse, talk, turnComplete IDLE."""
    settings = protocol.SessionSettings(model="gemini-3.8-live-extended-thinking", functions=(SET_TIMER,))

    async def scenario() -> None:
        scene = Scenario(reply="tone", tone_seconds=0.1, tool_calls=[("set_timer", {"minutes": 5})])
        async with Emulator(EmulatorConfig(pace=0), scene) as emu:
            async with raw_session(emu, settings) as client:
                await client.audio_turn(_pcm(1600))
                first = await client.receive_until(_turn_complete)
                (call,) = next(m for m in first if "toolCall" in m)["toolCall"]["functionCalls"]
                await client.send(protocol.tool_response([protocol.FunctionResponse(
                    call["id"], call["name"], {"output": "started"}, scheduling="WHEN_IDLE")]))
                second = await client.receive_until(_turn_complete)
            assert emu.internal_errors == []
            assert emu.turns[0].tool_behavior == "NON_BLOCKING"
            assert emu.turns[0].turn_completes == ["IN_PROGRESS", "IDLE"] and emu.turns[0].ending == "complete"

        assert _statuses(first) == ["IN_PROGRESS"] and _statuses(second) == ["IDLE"]
        assert _audio_bytes(first) > 0 and _audio_bytes(second) > 0

    asyncio.run(scenario())


def test_emulator_interaction_status_and_barge_without_turn_complete_are_valid_sdk_server_messages() -> None:
    async def scenario() -> None:
        scene = Scenario.from_specs(["tone:30", "interaction-status", "barge-no-complete"])
        async with Emulator(EmulatorConfig(pace=1.0), scene) as emu:
            async with raw_session(emu, FULL_SETTINGS) as client:
                await client.audio_turn(_pcm(1600))
                await client.receive_until(lambda m: "modelTurn" in m.get("serverContent", {}))
                await client.send(protocol.activity_start())
                cut = await client.receive_until(lambda m: bool(m.get("serverContent", {}).get("interrupted")))
                sent = await emu.send_go_away(0.5, close_after=False)
                (*_, go_away) = await client.receive_until(lambda m: "goAway" in m)
                await emu.wait_for(lambda e: e.turns[0].ended, WAIT_S)
            assert emu.internal_errors == []
            assert emu.turns[0].ending == "interrupted_no_turn_complete" and emu.turns[0].turn_completes == []

        assert sent == 1 and go_away == {"goAway": {"timeLeft": "0.5s"}}
        assert not any(_turn_complete(m) for m in cut)

    asyncio.run(scenario())
