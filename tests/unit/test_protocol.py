"""The sans-I/O protocol: what we send is exactly the documented wire, and nothing the
server sends can crash the parser."""

from __future__ import annotations

import base64
import json

import pytest

from appliance.live import messages as p
from appliance.live.parser import parse_duration, parse_server_frame
from appliance.live.profiles import known_models, profile_for

PCM = bytes(range(256)) * 4


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- builders


def test_setup_for_default_model_has_the_appliance_shape():
    settings_ = p.SessionSettings(model="gemini-3.8-live", voice="Puck", language="de-DE", system_instruction="Hi")
    msg = p.build_setup(settings_, profile_for(settings_.model))
    assert list(msg) == ["setup"]
    setup = msg["setup"]
    assert setup["model"] == "models/gemini-3.8-live"
    gen = setup["generationConfig"]
    assert gen["responseModalities"] == ["AUDIO"]
    assert gen["speechConfig"] == {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}},
        "languageCode": "de-DE",
    }
    assert "responseModalities" not in setup  # the seed documents' mistake
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": True}
    assert setup["sessionResumption"] == {}
    assert setup["contextWindowCompression"]["slidingWindow"] == {"targetTokens": 12800}
    assert setup["inputAudioTranscription"] == {} and setup["outputAudioTranscription"] == {}
    assert setup["systemInstruction"] == {"parts": [{"text": "Hi"}]}
    # 3.8 rejects these, so they must never appear
    assert "thinkingConfig" not in gen and "enableAffectiveDialog" not in gen
    assert "proactivity" not in setup


@pytest.mark.parametrize(
    "model, thinking, affective",
    [
        ("gemini-3.8-live", None, False),
        ("gemini-3.1-flash-live-preview", {"thinkingLevel": "MINIMAL"}, False),
        ("gemini-2.5-flash-native-audio-preview-12-2025", {"thinkingBudget": 0}, True),
        ("models/gemini-2.5-flash-native-audio-preview-12-2025", {"thinkingBudget": 0}, True),
        ("gemini-9-imaginary", None, False),
    ],
)
def test_model_profiles_shape_generation_config(model, thinking, affective):
    msg = p.build_setup(p.SessionSettings(model=model), profile_for(model))
    gen = msg["setup"]["generationConfig"]
    assert gen.get("thinkingConfig") == thinking
    assert gen.get("enableAffectiveDialog", False) is affective
    assert msg["setup"]["model"].count("models/") == 1
    proactivity = msg["setup"].get("proactivity", {})
    assert proactivity.get("proactiveAudio") is not False


def test_unknown_model_gets_the_conservative_profile():
    profile = profile_for("gemini-9-imaginary")
    assert not profile.known
    assert profile.thinking_config is None and profile.tool_behavior is None
    assert all(profile_for(m).known for m in known_models())


def test_setup_resumes_with_handle_and_declares_tools_per_profile():
    fn = {"name": "set_timer", "description": "Start a timer", "parameters": {"type": "OBJECT"}}
    s = p.SessionSettings(model="gemini-3.8-live", functions=(fn,), google_search=True)
    setup = p.build_setup(s, profile_for(s.model), resume_handle="h-42")["setup"]
    assert setup["sessionResumption"] == {"handle": "h-42"}
    decl = setup["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "set_timer" and decl["behavior"] == "BLOCKING"
    assert {"googleSearch": {}} in setup["tools"]
    # 3.1 takes no `behavior` and no search beside functions
    s31 = p.SessionSettings(model="gemini-3.1-flash-live-preview", functions=(fn,), google_search=True)
    tools31 = p.build_setup(s31, profile_for(s31.model))["setup"]["tools"]
    assert "behavior" not in tools31[0]["functionDeclarations"][0]
    assert {"googleSearch": {}} not in tools31


@pytest.mark.parametrize(
    "message, field",
    [
        (p.activity_start(), "activityStart"),
        (p.activity_end(), "activityEnd"),
        (p.audio_input(PCM), "audio"),
        (p.text_input("hello"), "text"),
    ],
)
def test_realtime_input_has_one_field(message, field):
    assert list(message) == ["realtimeInput"]
    assert list(message["realtimeInput"]) == [field]


def test_audio_input_is_standard_base64_pcm_16k():
    audio = p.audio_input(b"\xff\xfe" * 100)["realtimeInput"]["audio"]
    assert audio["mimeType"] == "audio/pcm;rate=16000"
    assert base64.b64decode(audio["data"], validate=True) == b"\xff\xfe" * 100
    assert "-" not in audio["data"] and "_" not in audio["data"]


def test_tool_response_echoes_ids_and_requires_them():
    msg = p.tool_response([p.FunctionResponse("fc-1", "set_timer", {"output": {"ok": True}})])
    assert msg == {
        "toolResponse": {"functionResponses": [{"id": "fc-1", "name": "set_timer", "response": {"output": {"ok": True}}}]}
    }
    with pytest.raises(ValueError, match="no call id"):
        p.tool_response([p.FunctionResponse("", "set_timer", {})])


def test_client_content_roles():
    msg = p.client_content([("user", "hi"), ("model", "hello")])
    assert msg["clientContent"]["turns"][1] == {"role": "model", "parts": [{"text": "hello"}]}
    assert msg["clientContent"]["turnComplete"] is True
    with pytest.raises(ValueError, match="role"):
        p.client_content([("system", "x")])


def test_encode_is_compact_json_text():
    text = p.encode(p.activity_start())
    assert isinstance(text, str) and json.loads(text) == p.activity_start() and " " not in text


# ---------------------------------------------------------------- parser tables


def frame(obj, binary=True):
    data = json.dumps(obj)
    return data.encode() if binary else data


PARSE_TABLE = [
    ({"setupComplete": {}}, [p.SetupComplete()]),
    ({"setupComplete": {"sessionId": "s1"}}, [p.SetupComplete("s1")]),
    (
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64(PCM)}}]}}},
        [p.AudioChunk(PCM, 24000)],
    ),
    (
        {"serverContent": {"inputTranscription": {"text": "set a timer", "finished": True}}},
        [p.InputTranscript("set a timer", True)],
    ),
    ({"serverContent": {"outputTranscription": {"text": "Sure"}}}, [p.OutputTranscript("Sure", False)]),
    ({"serverContent": {"interrupted": True}}, [p.Interrupted()]),
    ({"serverContent": {"generationComplete": True}}, [p.GenerationComplete()]),
    (
        {"serverContent": {"turnComplete": True, "interactionStatus": "IDLE", "turnCompleteReason": "NEED_MORE_INPUT", "waitingForInput": True}},
        [p.TurnComplete("NEED_MORE_INPUT", "IDLE", True)],
    ),
    (
        {"toolCall": {"functionCalls": [{"id": "fc-1", "name": "set_timer", "args": {"seconds": 60}}]}},
        [p.ToolCall((p.FunctionCall("fc-1", "set_timer", {"seconds": 60}),))],
    ),
    ({"toolCallCancellation": {"ids": ["fc-1", "fc-2"]}}, [p.ToolCallCancellation(("fc-1", "fc-2"))]),
    ({"goAway": {"timeLeft": "50s"}}, [p.GoAway(50.0)]),
    ({"goAway": {"timeLeft": "1.5s"}}, [p.GoAway(1.5)]),
    ({"goAway": {}}, [p.GoAway(None)]),
    ({"sessionResumptionUpdate": {"newHandle": "Cj8", "resumable": True}}, [p.ResumptionUpdate("Cj8", True)]),
    ({"sessionResumptionUpdate": {"resumable": False}}, [p.ResumptionUpdate(None, False)]),
    (
        {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True, "lastConsumedClientMessageIndex": "123456789012"}},
        [p.ResumptionUpdate("h", True, 123456789012)],
    ),
    ({"usageMetadata": {"promptTokenCount": "554", "responseTokenCount": 19, "totalTokenCount": 573}}, [p.Usage(554, 19, 573)]),
    ({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7}}, [p.Usage(5, 7, None)]),
    ({"serverContent": {"modelTurn": {"parts": [{"text": "thinking...", "thought": True}, {"text": "Hi"}]}}}, [p.ModelText("Hi")]),
]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
@pytest.mark.parametrize("obj, expected", PARSE_TABLE, ids=[next(iter(o)) for o, _ in PARSE_TABLE])
def test_parse_each_message_kind(obj, expected, binary):
    assert parse_server_frame(frame(obj, binary)) == expected


def test_snake_case_and_urlsafe_base64_are_accepted():
    data = b"\xfb\xff\xfe" * 10 + b"\x00\x01"  # bytes whose base64 needs + and /
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "-" in urlsafe or "_" in urlsafe
    obj = {
        "server_content": {
            "model_turn": {"parts": [{"inline_data": {"mime_type": "audio/pcm;rate=24000", "data": urlsafe}}]},
            "turn_complete": True,
        },
        "session_resumption_update": {"new_handle": "abc", "resumable": True},
    }
    events = parse_server_frame(frame(obj))
    assert p.AudioChunk(data, 24000) in events
    assert p.ResumptionUpdate("abc", True) in events
    assert events[-1] == p.TurnComplete()


def test_one_message_with_audio_transcript_and_turn_end_keeps_everything_in_order():
    obj = {
        "serverContent": {
            "modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64(PCM)}}]},
            "outputTranscription": {"text": "Sixty"},
            "turnComplete": True,
        },
        "usageMetadata": {"totalTokenCount": 9},
    }
    events = parse_server_frame(frame(obj))
    assert [type(e) for e in events] == [p.AudioChunk, p.OutputTranscript, p.Usage, p.TurnComplete]


def test_interrupted_comes_before_residue_audio_in_the_same_message():
    obj = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64(PCM)}}]}, "interrupted": True}}
    events = parse_server_frame(frame(obj))
    assert isinstance(events[0], p.Interrupted) and isinstance(events[1], p.AudioChunk)


def test_function_call_args_keep_their_own_spelling():
    obj = {"tool_call": {"function_calls": [{"id": "a", "name": "set_timer", "args": {"timer_label": "eggs"}}]}}
    [call_event] = parse_server_frame(frame(obj))
    assert call_event.calls[0].args == {"timer_label": "eggs"}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\xff\xfe not utf8", "not UTF-8"),
        (b'{"serverContent": {', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "empty"),
        (frame({"serverContent": "nope"}), "serverContent is not an object"),
        (frame({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "@@@"}}]}}}), "invalid base64"),
        (frame({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": b64(b"abc")}}]}}}), "odd length"),
        (frame({"toolCall": {"functionCalls": [{"id": "x"}]}}), "without a name"),
        (frame({"toolCall": {}}), "without functionCalls"),
        (b"[" * 100000, "not valid JSON"),
    ],
)
def test_malformed_input_becomes_an_error_event(raw, message):
    events = parse_server_frame(raw)
    assert any(isinstance(e, p.ProtocolError) and message in e.message for e in events), events


def test_unknown_fields_are_reported_not_fatal():
    events = parse_server_frame(frame({"somethingNew": {"a": 1}, "setupComplete": {}}))
    assert p.SetupComplete() in events
    assert any(isinstance(e, p.Unknown) and e.key == "somethingNew" for e in events)


def test_a_function_call_without_id_is_kept_with_none():
    [event] = parse_server_frame(frame({"toolCall": {"functionCalls": [{"name": "get_time"}]}}))
    assert event.calls[0].id is None


@pytest.mark.parametrize(
    "raw, seconds",
    [("50s", 50.0), ("1.5s", 1.5), (" 2 s", 2.0), ("0.25", 0.25), (7, 7.0), ({"seconds": "3", "nanos": 500000000}, 3.5), ("soon", None), (True, None), ("nans", None)],
)
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


def test_audio_rate_is_read_from_mime_type():
    obj = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=16000", "data": b64(PCM)}}]}}}
    assert parse_server_frame(frame(obj)) == [p.AudioChunk(PCM, 16000)]
