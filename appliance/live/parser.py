"""Server frames to typed events: the receiving half of the Live codec.

`parse_server_frame` takes one WebSocket frame (the service sends JSON in binary
frames) and returns the events in it, in a stable order.  It never raises: a frame it
cannot read becomes a `ProtocolError` event the session logs and skips.  Values are
read tolerantly, the way proto3 JSON allows (camelCase or snake_case keys, durations
as "1.5s" or {seconds, nanos}, int64 as strings), and every string is cleaned where it
enters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from appliance.live.cleaning import (
    ARGS_MAX_DEPTH,
    ARGS_MAX_ITEMS,
    HANDLE_LIMIT,
    NAME_LIMIT,
    TEXT_LIMIT,
    ArgsTooBig,
    clean_json,
    clean_text,
    identifier,
)
from appliance.live.messages import (
    MAX_OUTPUT_RATE,
    MIN_OUTPUT_RATE,
    OUTPUT_RATE,
    AudioChunk,
    FunctionCall,
    GenerationComplete,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelText,
    OutputTranscript,
    ProtocolError,
    ResumptionUpdate,
    ServerEvent,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Unknown,
    Usage,
)

_EXCERPT_CHARS = 160


_TOP_LEVEL_IGNORED = {"voiceActivity", "voiceActivityDetectionSignal"}


def parse_server_frame(frame: str | bytes | bytearray | memoryview) -> list[ServerEvent]:
    """All events in one server frame, in a stable order; never raises."""
    try:
        return _parse(frame)
    except Exception as exc:  # the last line of defence: nothing from the wire is fatal
        return [ProtocolError(f"unparseable server message ({type(exc).__name__})", _excerpt(frame))]


def _parse(frame: str | bytes | bytearray | memoryview) -> list[ServerEvent]:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            return [ProtocolError("server message is not UTF-8", _excerpt(frame))]
    elif isinstance(frame, str):
        text = frame
    else:
        return [ProtocolError(f"server message of type {type(frame).__name__}", "")]
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return [ProtocolError("server message is not valid JSON", _excerpt(text))]
    if not isinstance(message, dict):
        return [ProtocolError("server message is not a JSON object", _excerpt(text))]

    message = _camel_keys(message)
    events: list[ServerEvent] = []
    for key, value in message.items():
        handler = _HANDLERS.get(key)
        if handler is not None:
            events.extend(handler(value))
        elif key in _TOP_LEVEL_IGNORED:
            continue
        else:
            events.append(Unknown(clean_text(str(key), NAME_LIMIT), _excerpt(json.dumps(value, default=str))))
    if not message:
        events.append(ProtocolError("empty server message", "{}"))
    # usage rides along with turnComplete: report the turn's end last, so whoever
    # stops reading at turnComplete has seen everything the frame said
    events.sort(key=lambda e: isinstance(e, TurnComplete))
    return events


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # the service writes strict JSON: no NaN/Infinity


def _setup_complete(value: Any) -> list[ServerEvent]:
    raw = value.get("sessionId") if isinstance(value, dict) else None
    return [SetupComplete(identifier(raw, HANDLE_LIMIT) if isinstance(raw, str) else None)]


def _text_of(value: Any) -> str | None:
    """The cleaned `text` of a transcription object, or None when there is none."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return clean_text(value["text"], TEXT_LIMIT)
    return None


def _enum_text(raw: Any) -> str | None:
    return clean_text(raw, NAME_LIMIT) if isinstance(raw, str) else None


def _server_content(value: Any) -> list[ServerEvent]:
    if not isinstance(value, dict):
        return [ProtocolError("serverContent is not an object", _excerpt(repr(value)))]
    events: list[ServerEvent] = []
    transcript = value.get("inputTranscription")
    text = _text_of(transcript)
    if text is not None:
        events.append(InputTranscript(text, _as_bool(transcript.get("finished"))))
    if _as_bool(value.get("interrupted")):
        events.append(Interrupted())
    turn = value.get("modelTurn")
    if isinstance(turn, dict):
        parts = turn.get("parts")
        if isinstance(parts, list):
            for part in parts:
                events.extend(_model_part(part))
        elif parts is not None:
            events.append(ProtocolError("modelTurn.parts is not a list", _excerpt(repr(parts))))
    transcript = value.get("outputTranscription")
    text = _text_of(transcript)
    if text is not None:
        events.append(OutputTranscript(text, _as_bool(transcript.get("finished"))))
    if _as_bool(value.get("generationComplete")):
        events.append(GenerationComplete())
    if _as_bool(value.get("turnComplete")):
        events.append(
            TurnComplete(
                reason=_enum_text(value.get("turnCompleteReason")),
                interaction_status=_enum_text(value.get("interactionStatus")),
                waiting_for_input=_as_bool(value.get("waitingForInput")),
            )
        )
    return events


def _model_part(part: Any) -> list[ServerEvent]:
    if not isinstance(part, dict):
        return [ProtocolError("modelTurn part is not an object", _excerpt(repr(part)))]
    if part.get("thought") is True:
        return []  # thinking text is not for the user
    inline = part.get("inlineData")
    if isinstance(inline, dict):
        mime = inline.get("mimeType")
        mime = mime if isinstance(mime, str) else ""
        if not mime.lower().startswith("audio/"):
            return [Unknown("inlineData", _excerpt(mime or "(no mimeType)"))]
        data = inline.get("data")
        if not isinstance(data, str):
            return [ProtocolError("audio part without base64 data", _excerpt(mime))]
        pcm = decode_base64(data)
        if pcm is None:
            return [ProtocolError("audio part with invalid base64", _excerpt(data))]
        if len(pcm) % 2:
            return [ProtocolError(f"audio part of odd length {len(pcm)}", _excerpt(mime))]
        rate = _rate_of(mime)
        if rate is None:
            return [ProtocolError(f"audio part with an unusable rate (want {MIN_OUTPUT_RATE}..{MAX_OUTPUT_RATE} Hz)",
                                  _excerpt(mime))]
        return [AudioChunk(pcm, rate)]
    text = part.get("text")
    if isinstance(text, str):
        return [ModelText(clean_text(text, TEXT_LIMIT))]
    return [Unknown("modelTurn.part", _excerpt(json.dumps(part, default=str)))]


def _tool_call(value: Any) -> list[ServerEvent]:
    calls_raw = value.get("functionCalls") if isinstance(value, dict) else None
    if not isinstance(calls_raw, list):
        return [ProtocolError("toolCall without functionCalls", _excerpt(repr(value)))]
    calls: list[FunctionCall] = []
    errors: list[ServerEvent] = []
    for raw in calls_raw:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            errors.append(ProtocolError("function call without a name", _excerpt(repr(raw))))
            continue
        name = clean_text(raw["name"], NAME_LIMIT)
        raw_id = raw.get("id")
        call_id = identifier(raw_id, NAME_LIMIT)
        if call_id is None and raw_id not in (None, ""):
            errors.append(ProtocolError(f"function call {name!r} with an unusable id", _excerpt(repr(raw_id))))
        args, problem = _call_args(raw.get("args"))
        if problem is not None:
            errors.append(ProtocolError(f"function call {name!r}: {problem}", _excerpt(repr(raw.get("args")))))
        calls.append(FunctionCall(id=call_id, name=name, args=args, problem=problem))
    return ([ToolCall(tuple(calls))] if calls else []) + errors


def _call_args(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Cleaned arguments and, when they cannot be used, why."""
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        return {}, "args is not an object"
    try:
        return clean_json(raw, 0, [ARGS_MAX_ITEMS]), None
    except ArgsTooBig:
        return {}, f"args nested deeper than {ARGS_MAX_DEPTH} or larger than {ARGS_MAX_ITEMS} values"


def _tool_call_cancellation(value: Any) -> list[ServerEvent]:
    ids = value.get("ids") if isinstance(value, dict) else None
    if not isinstance(ids, list):
        return [ProtocolError("toolCallCancellation without ids", _excerpt(repr(value)))]
    cleaned = [identifier(i, NAME_LIMIT) for i in ids]
    events: list[ServerEvent] = [ToolCallCancellation(tuple(i for i in cleaned if i is not None))]
    if None in cleaned:
        events.append(ProtocolError("toolCallCancellation with unusable ids", _excerpt(repr(ids))))
    return events


def _go_away(value: Any) -> list[ServerEvent]:
    raw = value.get("timeLeft") if isinstance(value, dict) else None
    return [GoAway(parse_duration(raw))]


def _resumption_update(value: Any) -> list[ServerEvent]:
    if not isinstance(value, dict):
        return [ProtocolError("sessionResumptionUpdate is not an object", _excerpt(repr(value)))]
    raw = value.get("newHandle")
    handle = identifier(raw, HANDLE_LIMIT) if isinstance(raw, str) else None
    events: list[ServerEvent] = [
        ResumptionUpdate(
            new_handle=handle,
            resumable=_as_bool(value.get("resumable")),
            last_consumed_index=_as_int(value.get("lastConsumedClientMessageIndex")),
        )
    ]
    if handle is None and isinstance(raw, str) and raw:
        events.append(ProtocolError("resumption handle unusable (bad characters or too long)", _excerpt(raw)))
    return events


def _usage(value: Any) -> list[ServerEvent]:
    if not isinstance(value, dict):
        return [ProtocolError("usageMetadata is not an object", _excerpt(repr(value)))]
    response = value.get("responseTokenCount", value.get("candidatesTokenCount"))
    return [
        Usage(
            prompt_tokens=_as_int(value.get("promptTokenCount")),
            response_tokens=_as_int(response),
            total_tokens=_as_int(value.get("totalTokenCount")),
        )
    ]


_HANDLERS = {
    "setupComplete": _setup_complete,
    "serverContent": _server_content,
    "toolCall": _tool_call,
    "toolCallCancellation": _tool_call_cancellation,
    "goAway": _go_away,
    "sessionResumptionUpdate": _resumption_update,
    "usageMetadata": _usage,
}


# --------------------------------------------------------------------------
# Tolerant value decoding (proto3 JSON as the service and other clients write it)

_SNAKE = re.compile(r"_([a-z0-9])")
#: values below these keys are the caller's own data and keep their spelling
_OPAQUE_KEYS = {"args", "response"}


def _camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            name = _camel(k) if isinstance(k, str) else k
            out[name] = v if name in _OPAQUE_KEYS else _camel_keys(v)
        return out
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def decode_base64(data: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None when it is not base64."""
    cleaned = "".join(data.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*s\s*$")


def parse_duration(raw: Any) -> float | None:
    """proto3 Duration: "50s", "1.5s", a bare number, or {"seconds", "nanos"}."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw) if raw == raw and abs(raw) != float("inf") else None
    if isinstance(raw, str):
        match = _DURATION.match(raw)
        if match:
            return float(match.group(1))
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(raw, dict):
        seconds = _as_int(raw.get("seconds")) or 0
        nanos = _as_int(raw.get("nanos")) or 0
        return seconds + nanos / 1e9
    return None


def _as_int(raw: Any) -> int | None:
    """int64 fields arrive as JSON strings; accept numbers too."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            return None
    return None


def _as_bool(raw: Any) -> bool:
    return raw is True or (isinstance(raw, str) and raw.lower() == "true")


_RATE_VALUE = re.compile(r"[0-9]{1,6}")


def _rate_of(mime: str) -> int | None:
    """The `rate=` parameter of an audio MIME type: 24000 when absent, None when unusable."""
    for param in mime.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() != "rate":
            continue
        value = value.strip()
        if not _RATE_VALUE.fullmatch(value):
            return None
        rate = int(value)
        return rate if MIN_OUTPUT_RATE <= rate <= MAX_OUTPUT_RATE else None
    return OUTPUT_RATE


def _excerpt(value: Any) -> str:
    """A short, clean rendering of something the service sent, for logs."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)[:_EXCERPT_CHARS].decode("utf-8", "replace")
    text = clean_text(str(value), _EXCERPT_CHARS + 1)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."
