"""The reply audio's rate label is honoured, and what our builders send is what 3.1+ accepts:
no `null` anywhere, no deprecated `mediaChunks`, typed turns wrapped in activity signals, and
NON_BLOCKING declarations for the extended-thinking model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.live import messages as p
from appliance.live.parser import parse_server_frame
from appliance.live.profiles import known_models, profile_for

PCM = b"\x01\x02" * 480


def audio_frame(mime: str) -> bytes:
    part = {"inlineData": {"mimeType": mime, "data": base64.b64encode(PCM).decode()}}
    return json.dumps({"serverContent": {"modelTurn": {"parts": [part]}}}).encode()


# ---------------------------------------------------------------- rate label


@pytest.mark.parametrize(("mime", "rate"), [
    ("audio/pcm;rate=24000", 24000),
    ("audio/pcm;rate=16000", 16000),
    ("audio/pcm", 24000),  # no rate named: the documented output rate
    ("audio/pcm; RATE = 8000", 8000),
    ("audio/pcm;codec=pcm_s16le;rate=48000", 48000),
    ("audio/pcm;channels=1", 24000),
])
def test_audio_chunk_rate_comes_from_the_label(mime: str, rate: int) -> None:
    assert parse_server_frame(audio_frame(mime)) == [p.AudioChunk(PCM, rate)]


@pytest.mark.parametrize("mime", ["audio/pcm;rate=96000", "audio/pcm;rate=7999", "audio/pcm;rate=abc",
                                  "audio/pcm;rate=", "audio/pcm;rate=24000.5", "audio/pcm;rate=-16000",
                                  "audio/pcm;rate=1e4", "audio/pcm;rate=" + "9" * 40])
def test_unusable_rate_is_a_protocol_error_not_audio(mime: str) -> None:
    [event] = parse_server_frame(audio_frame(mime))
    assert isinstance(event, p.ProtocolError) and "rate" in event.message
    assert "8000..48000" in event.message


def test_an_unusable_rate_spoils_only_its_own_part() -> None:
    good = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(PCM).decode()}}
    bad = {"inlineData": {"mimeType": "audio/pcm;rate=1", "data": base64.b64encode(PCM).decode()}}
    obj = {"serverContent": {"modelTurn": {"parts": [bad, good]}, "turnComplete": True}}
    events = parse_server_frame(json.dumps(obj))
    assert [type(e) for e in events] == [p.ProtocolError, p.AudioChunk, p.TurnComplete]


# ---------------------------------------------------------------- builders: no nulls, no mediaChunks


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def assert_wire_safe(message: dict[str, Any]) -> None:
    nulls = [path for path, value in walk(message) if value is None]
    assert not nulls, f"null at {nulls}"
    assert not any(path.endswith(".mediaChunks") for path, _ in walk(message))
    json.loads(p.encode(message))
    p.encode(message).encode("utf-8")


SET_TIMER = {"name": "set_timer", "description": None,
             "parameters": {"type": "OBJECT", "properties": {"seconds": {"type": "INTEGER", "description": None}},
                            "required": ["seconds"], "example": None}}


@pytest.mark.parametrize("model", [*known_models(), "gemini-9-imaginary"])
@pytest.mark.parametrize("handle", [None, "", "Cj8handle"])
def test_setups_never_carry_null_even_from_sloppy_declarations(model: str, handle: str | None) -> None:
    settings = p.SessionSettings(model=model, functions=(SET_TIMER,), google_search=True, language="",
                                 system_instruction="")
    setup = p.build_setup(settings, profile_for(model), resume_handle=handle)
    assert_wire_safe(setup)
    assert setup["setup"]["sessionResumption"] == ({"handle": handle} if handle else {})
    decl = setup["setup"]["tools"][0]["functionDeclarations"][0]
    assert "description" not in decl and "description" not in decl["parameters"]["properties"]["seconds"]


def test_extended_thinking_declares_every_function_non_blocking() -> None:
    model = "gemini-3.8-live-extended-thinking"
    settings = p.SessionSettings(model=model, functions=(SET_TIMER, {"name": "get_time"}))
    decls = p.build_setup(settings, profile_for(model))["setup"]["tools"][0]["functionDeclarations"]
    assert [d["behavior"] for d in decls] == ["NON_BLOCKING", "NON_BLOCKING"]
    assert profile_for("gemini-3.8-live").tool_behavior == "BLOCKING"  # unchanged for the default model


def test_tool_responses_leave_nulls_out_of_the_payload() -> None:
    message = p.tool_response([p.FunctionResponse("fc-1", "set_timer",
                                                  {"output": {"label": None, "left": [1, None, {"x": None}]},
                                                   "error": None})])
    assert_wire_safe(message)
    assert message["toolResponse"]["functionResponses"][0]["response"] == {"output": {"left": [1, {}]}}


def test_every_realtime_builder_is_wire_safe_and_never_media_chunks() -> None:
    for message in (p.activity_start(), p.activity_end(), p.audio_input(PCM), p.text_input("hi"),
                    *p.text_turn("hi"), p.client_content([("user", "hi")])):
        assert_wire_safe(message)


def test_text_turn_wraps_the_text_in_activity_signals() -> None:
    assert p.text_turn("wie lange?") == (p.activity_start(), p.text_input("wie lange?"), p.activity_end())


def test_encode_cleans_a_lone_surrogate_instead_of_failing_later() -> None:
    text = p.encode(p.text_input("egg \ud800 timer"))
    text.encode("utf-8")
    assert json.loads(text) == {"realtimeInput": {"text": "egg \ufffd timer"}}
    assert p.encode(p.text_input("Grüße")) == '{"realtimeInput":{"text":"Grüße"}}'
