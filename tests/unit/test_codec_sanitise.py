"""Strings from the service are cleaned where they enter the codec: whatever the server sends, every
string in a parsed event can be logged, JSON-encoded and sent back as UTF-8 without an exception."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.live import messages as p
from appliance.live import cleaning
from appliance.live.parser import parse_server_frame

LONE = "\ud800"
#: any code point, with lone surrogates and NULs drawn far more often than by chance
HOSTILE_CHARS = st.characters(exclude_categories=()) | st.sampled_from([LONE, "\udfff", "\udc80", "\x00"])


def frame(obj: Any) -> bytes:
    """A server frame as the service would write it: JSON escapes survive for lone surrogates."""
    return json.dumps(obj).encode("ascii")


def strings_in(value: Any) -> Iterator[str]:
    """Every str inside an event (dataclass fields, mappings, sequences), keys included."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from strings_in(getattr(value, f.name))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


def assert_all_clean(events: list[p.ServerEvent]) -> None:
    for text in strings_in(events):
        text.encode("utf-8")  # strict: raises on a lone surrogate
        assert "\x00" not in text


# ---------------------------------------------------------------- clean_text


@pytest.mark.parametrize(("raw", "limit", "expected"), [
    ("plain", 100, "plain"),
    (f"a{LONE}b", 100, "a\ufffdb"),
    ("\udc00\ud800", 100, "\ufffd\ufffd"),
    ("nul\x00led", 100, "nulled"),
    ("x" * 10, 4, "xxxx"),
    ("Grüße 🥚", 100, "Grüße 🥚"),  # valid non-ASCII, astral characters included, is kept
    ("anything", 0, ""),
])
def test_clean_text(raw: str, limit: int, expected: str) -> None:
    assert cleaning.clean_text(raw, limit) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=HOSTILE_CHARS, max_size=300), st.integers(0, 400))
def test_clean_text_always_gives_strict_utf8_within_the_limit(raw: str, limit: int) -> None:
    out = cleaning.clean_text(raw, limit)
    out.encode("utf-8")
    assert len(out) <= limit and "\x00" not in out


# ---------------------------------------------------------------- tool calls


def test_tool_call_with_a_lone_surrogate_in_its_args_is_json_and_utf8_safe() -> None:
    obj = {"toolCall": {"functionCalls": [{"id": "fc-1", "name": "set_timer",
                                           "args": {"seconds": 60, "label": LONE,
                                                    "notes": [f"egg{LONE}", {"deep": f"x\x00{LONE}"}],
                                                    f"key{LONE}": True}}]}}
    [event] = parse_server_frame(frame(obj))
    assert isinstance(event, p.ToolCall)
    (call,) = event.calls
    assert call.id == "fc-1" and call.problem is None
    assert call.args["label"] == "\ufffd" and call.args["seconds"] == 60
    assert call.args["notes"] == ["egg\ufffd", {"deep": "x\ufffd"}]
    assert call.args["key\ufffd"] is True
    json.dumps(call.args, ensure_ascii=False).encode("utf-8")  # strict
    json.dumps(call.args)


def test_a_text_frame_with_a_raw_lone_surrogate_is_cleaned_too() -> None:
    text = '{"serverContent": {"outputTranscription": {"text": "hi ' + LONE + '"}}}'
    assert parse_server_frame(text) == [p.OutputTranscript("hi \ufffd")]


def test_tool_names_are_cleaned_and_bounded_ids_that_would_change_are_dropped() -> None:
    obj = {"toolCall": {"functionCalls": [
        {"id": f"fc{LONE}", "name": "n" * 500},
        {"id": "x" * 129, "name": f"get{LONE}time"},
        {"id": 42, "name": "list_timers"},
    ]}}
    events = parse_server_frame(frame(obj))
    call_event = next(e for e in events if isinstance(e, p.ToolCall))
    first, second, third = call_event.calls
    assert first.name == "n" * cleaning.NAME_LIMIT and first.id is None
    assert second.name == "get\ufffdtime" and second.id is None
    assert third.id == "42"
    errors = [e for e in events if isinstance(e, p.ProtocolError)]
    assert len(errors) == 2 and all("unusable id" in e.message for e in errors)
    assert_all_clean(events)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value


@pytest.mark.parametrize(("args", "problem"), [
    (nested(cleaning.ARGS_MAX_DEPTH + 1), "nested deeper"),
    ({"items": list(range(cleaning.ARGS_MAX_ITEMS + 1))}, "larger than"),
    ([1, 2], "not an object"),
    ("seconds=5", "not an object"),
])
def test_unusable_args_give_an_empty_object_a_problem_and_an_error_event(args: Any, problem: str) -> None:
    obj = {"toolCall": {"functionCalls": [{"id": "fc-9", "name": "set_timer", "args": args}]}}
    events = parse_server_frame(frame(obj))
    (call,) = next(e for e in events if isinstance(e, p.ToolCall)).calls
    assert call.args == {} and call.problem is not None and problem in call.problem
    assert any(isinstance(e, p.ProtocolError) and problem in e.message for e in events)


def test_args_at_the_bounds_are_kept() -> None:
    deep = nested(cleaning.ARGS_MAX_DEPTH - 1)
    obj = {"toolCall": {"functionCalls": [{"id": "a", "name": "f", "args": deep},
                                          {"id": "b", "name": "g", "args": {"s": "y" * 10_000}}]}}
    [event] = parse_server_frame(frame(obj))
    assert event.calls[0].args == deep and event.calls[0].problem is None
    assert event.calls[1].args == {"s": "y" * cleaning.TEXT_LIMIT}


def test_missing_args_are_an_empty_object_without_a_problem() -> None:
    [event] = parse_server_frame(frame({"toolCall": {"functionCalls": [{"id": "a", "name": "get_time"}]}}))
    assert event.calls[0].args == {} and event.calls[0].problem is None


def test_cancellation_keeps_only_usable_ids() -> None:
    events = parse_server_frame(frame({"toolCallCancellation": {"ids": ["fc-1", f"fc{LONE}", 7, None]}}))
    assert events[0] == p.ToolCallCancellation(("fc-1", "7"))
    assert any(isinstance(e, p.ProtocolError) for e in events)


# ---------------------------------------------------------------- text, transcripts, handles, odds and ends


def test_transcripts_and_model_text_are_cleaned_and_bounded() -> None:
    obj = {"serverContent": {
        "inputTranscription": {"text": f"set{LONE}\x00 a timer", "finished": True},
        "modelTurn": {"parts": [{"text": "z" * 10_000}]},
        "outputTranscription": {"text": "ok\x00"},
        "turnComplete": True, "interactionStatus": f"IDLE{LONE}", "turnCompleteReason": "R" * 300,
    }}
    events = parse_server_frame(frame(obj))
    assert events[0] == p.InputTranscript("set\ufffd a timer", True)
    assert events[1] == p.ModelText("z" * cleaning.TEXT_LIMIT)
    assert events[2] == p.OutputTranscript("ok")
    assert events[3] == p.TurnComplete("R" * cleaning.NAME_LIMIT, "IDLE\ufffd")


def test_resumption_handle_and_session_id_that_would_change_are_not_used() -> None:
    events = parse_server_frame(frame({"sessionResumptionUpdate": {"newHandle": f"h{LONE}", "resumable": True}}))
    assert events[0] == p.ResumptionUpdate(None, True)
    assert isinstance(events[1], p.ProtocolError) and "handle" in events[1].message
    long_handle = "H" * (cleaning.HANDLE_LIMIT + 1)
    events = parse_server_frame(frame({"sessionResumptionUpdate": {"newHandle": long_handle, "resumable": True}}))
    assert events[0].new_handle is None
    assert parse_server_frame(frame({"setupComplete": {"sessionId": f"s\x00{LONE}"}})) == [p.SetupComplete(None)]
    ok = "Cj8" + "a" * 300
    assert parse_server_frame(frame({"sessionResumptionUpdate": {"newHandle": ok, "resumable": True}})) == [
        p.ResumptionUpdate(ok, True)]


def test_unknown_keys_and_error_excerpts_are_clean() -> None:
    events = parse_server_frame(frame({f"new{LONE}": {"x": f"\x00{LONE}"}, "serverContent": f"{LONE}"}))
    assert_all_clean(events)
    assert any(isinstance(e, p.Unknown) and e.key == "new\ufffd" for e in events)


@pytest.mark.parametrize("raw", [b'{"goAway": {"timeLeft": NaN}}', b'{"usageMetadata": {"totalTokenCount": Infinity}}'])
def test_non_json_constants_make_the_frame_invalid(raw: bytes) -> None:
    [event] = parse_server_frame(raw)
    assert isinstance(event, p.ProtocolError) and "not valid JSON" in event.message


# ---------------------------------------------------------------- properties

hostile_text = st.text(alphabet=HOSTILE_CHARS, max_size=40)
hostile_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(name=hostile_text, call_id=hostile_text, args=hostile_json, transcript=hostile_text, handle=hostile_text)
def test_every_string_in_every_event_is_strict_utf8_whatever_the_service_sends(
        name: str, call_id: str, args: Any, transcript: str, handle: str) -> None:
    messages = [
        {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}},
        {"serverContent": {"inputTranscription": {"text": transcript},
                           "outputTranscription": {"text": transcript},
                           "modelTurn": {"parts": [{"text": transcript}]}}},
        {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}, "goAway": {"timeLeft": transcript}},
        {"toolCallCancellation": {"ids": [call_id, name]}, transcript or "k": args},
    ]
    for obj in messages:
        events = parse_server_frame(frame(obj))
        assert_all_clean(events)
        for event in events:
            if isinstance(event, p.ToolCall):
                for call in event.calls:
                    json.dumps(call.args, ensure_ascii=False).encode("utf-8")
                    assert len(call.name) <= cleaning.NAME_LIMIT
                    assert call.id is None or len(call.id) <= cleaning.NAME_LIMIT
