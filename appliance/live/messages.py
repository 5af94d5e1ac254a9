"""Sans-I/O Gemini Live protocol.

Builders turn our intentions into client messages (plain dicts, camelCase, one
top-level key each); `parse_server_frame` turns one WebSocket frame into typed
events.  Nothing here touches a socket, a clock or a logger, so every rule of the
wire can be tested with plain data, and the session and the emulator can both be
checked against it.

Builders never emit `null` (3.1 and later close 1007 on it) nor the deprecated
`mediaChunks`.  Every string the service sends passes through `clean_text` where it
enters (transcripts, text, names, ids, tool arguments, handles), so later code can
log it, JSON-encode it and send it back without a UnicodeEncodeError or a runaway
length.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from appliance.live.profiles import ModelProfile

INPUT_RATE = 16000
OUTPUT_RATE = 24000
MIN_OUTPUT_RATE = 8000
MAX_OUTPUT_RATE = 48000
_EXCERPT_CHARS = 160

#: bounds for strings from the service (characters, after cleaning)
TEXT_LIMIT = 4096  # transcripts, model text, string values in tool arguments
NAME_LIMIT = 128  # tool names, call ids, argument keys, enum-like values
HANDLE_LIMIT = 4096  # resumption handles (opaque; a cut one would be useless, so too long = unusable)
#: bounds for a tool call's arguments: nesting depth and number of values in all
ARGS_MAX_DEPTH = 16
ARGS_MAX_ITEMS = 1000


# --------------------------------------------------------------------------
# Cleaning strings from the service


def clean_text(s: str, limit: int) -> str:
    """A string fit to log, JSON-encode and send on: lone surrogates become U+FFFD,
    NULs are removed, and at most `limit` characters are kept.

    Why: `json.loads` happily yields lone surrogates ("\\ud800"), which make any
    later UTF-8 encoding (websockets, log files) raise; NULs cut C strings short.
    """
    if limit <= 0:
        return ""
    if "\x00" in s:
        s = s.replace("\x00", "")
    s = s[:limit]
    if not s.isascii():
        # json.loads joins escaped pairs into one character, so any surrogate left here stands alone
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in s)
    return s


def _identifier(raw: Any, limit: int) -> str | None:
    """An opaque id/handle, only if it is a clean string within `limit`: a changed one would be wrong."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw:
        return None
    return raw if clean_text(raw, limit) == raw else None


class _ArgsTooBig(Exception):
    pass


def _clean_json(value: Any, depth: int, budget: list[int]) -> Any:
    """A cleaned copy of a JSON value: strings via clean_text, within depth and size bounds."""
    budget[0] -= 1
    if budget[0] < 0 or depth > ARGS_MAX_DEPTH:
        raise _ArgsTooBig
    if isinstance(value, str):
        return clean_text(value, TEXT_LIMIT)
    if isinstance(value, dict):
        return {clean_text(str(k), NAME_LIMIT): _clean_json(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v, depth + 1, budget) for v in value]
    return value  # None, bool, int, float (strict JSON: no NaN/Infinity)


# --------------------------------------------------------------------------
# Client messages


@dataclass(frozen=True)
class SessionSettings:
    """Everything the `setup` message says, independent of where it came from."""

    model: str
    voice: str = "Kore"
    language: str = ""
    system_instruction: str = ""
    input_transcription: bool = True
    output_transcription: bool = True
    #: function declarations as {"name", "description", "parameters"} dicts;
    #: the profile decides the `behavior` field
    functions: tuple[Mapping[str, Any], ...] = ()
    google_search: bool = False
    compression_trigger_tokens: int = 25600
    compression_target_tokens: int = 12800


def encode(message: Mapping[str, Any]) -> str:
    """Serialise a client message for one text frame.

    A lone surrogate in some string (text that did not come through `clean_text`)
    would make the UTF-8 encoding of the frame fail; such strings are cleaned here.
    """
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_clean_strings(message), separators=(",", ":"), ensure_ascii=False)
    return text


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, len(value))
    if isinstance(value, Mapping):
        return {_clean_strings(k): _clean_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_strings(v) for v in value]
    return value


def _without_nulls(value: Any) -> Any:
    """A copy without None: dict entries and list items holding None are left out.

    Why: 3.1 and later close with 1007 on a `null` anywhere; leaving a field out is
    what proto3 means by null anyway.
    """
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def build_setup(
    settings: SessionSettings, profile: ModelProfile, resume_handle: str | None = None
) -> dict[str, Any]:
    """The first message of every connection.

    Activity detection is always off: the appliance decides when the user speaks
    (button plus local VAD) and says so with activityStart/activityEnd.
    """
    model = settings.model if settings.model.startswith("models/") else f"models/{settings.model}"
    speech: dict[str, Any] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": settings.voice}}}
    if settings.language:
        speech["languageCode"] = settings.language
    generation: dict[str, Any] = {"responseModalities": ["AUDIO"], "speechConfig": speech}
    if profile.thinking_config is not None:
        generation["thinkingConfig"] = dict(profile.thinking_config)
    if profile.affective_dialog:
        generation["enableAffectiveDialog"] = True

    setup: dict[str, Any] = {"model": model, "generationConfig": generation}
    if settings.system_instruction:
        setup["systemInstruction"] = {"parts": [{"text": settings.system_instruction}]}
    tools = _build_tools(settings, profile)
    if tools:
        setup["tools"] = tools
    setup["realtimeInputConfig"] = {
        "automaticActivityDetection": {"disabled": True},
        "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
        "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY",
    }
    if settings.input_transcription:
        setup["inputAudioTranscription"] = {}
    if settings.output_transcription:
        setup["outputAudioTranscription"] = {}
    if profile.proactive_audio:
        setup["proactivity"] = {"proactiveAudio": True}
    setup["sessionResumption"] = {"handle": resume_handle} if resume_handle else {}
    setup["contextWindowCompression"] = {
        "triggerTokens": settings.compression_trigger_tokens,
        "slidingWindow": {"targetTokens": settings.compression_target_tokens},
    }
    return {"setup": setup}


def _build_tools(settings: SessionSettings, profile: ModelProfile) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    if settings.functions:
        declarations = []
        for fn in settings.functions:
            decl = {k: _without_nulls(fn[k]) for k in ("name", "description", "parameters") if fn.get(k) is not None}
            if profile.tool_behavior:
                decl["behavior"] = profile.tool_behavior
            declarations.append(decl)
        tools.append({"functionDeclarations": declarations})
    if settings.google_search and (profile.search_with_functions or not settings.functions):
        tools.append({"googleSearch": {}})
    return tools


def activity_start() -> dict[str, Any]:
    return {"realtimeInput": {"activityStart": {}}}


def activity_end() -> dict[str, Any]:
    return {"realtimeInput": {"activityEnd": {}}}


def audio_input(pcm: bytes, rate: int = INPUT_RATE) -> dict[str, Any]:
    """16-bit little-endian mono PCM, standard base64."""
    return {
        "realtimeInput": {
            "audio": {"mimeType": f"audio/pcm;rate={rate}", "data": base64.b64encode(pcm).decode("ascii")}
        }
    }


def text_input(text: str) -> dict[str, Any]:
    """Bare text; only valid on its own with automatic activity detection on. Our
    setup turns it off, so send `text_turn` instead."""
    return {"realtimeInput": {"text": text}}


def text_turn(text: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A typed user turn under manual activity detection: activityStart, text, activityEnd.

    Why: with automatic activity detection disabled the client marks every turn,
    typed ones too; a bare `realtimeInput.text` starts no reply (the emulator closes 1007).
    """
    return activity_start(), text_input(text), activity_end()


@dataclass(frozen=True)
class FunctionResponse:
    """Our answer to one function call; `id` must echo the call's id."""

    id: str
    name: str
    response: Mapping[str, Any]
    scheduling: str | None = None  # SILENT | WHEN_IDLE | INTERRUPT, non-blocking tools only
    will_continue: bool | None = None


def tool_response(responses: Sequence[FunctionResponse]) -> dict[str, Any]:
    items = []
    for r in responses:
        if not r.id:
            raise ValueError(f"function response for {r.name!r} has no call id")
        item: dict[str, Any] = {"id": r.id, "name": r.name, "response": _without_nulls(r.response)}
        if r.scheduling is not None:
            item["scheduling"] = r.scheduling
        if r.will_continue is not None:
            item["willContinue"] = r.will_continue
        items.append(item)
    return {"toolResponse": {"functionResponses": items}}


def client_content(turns: Iterable[tuple[str, str]], turn_complete: bool = True) -> dict[str, Any]:
    """Ordered history turns as (role, text) pairs; role is "user" or "model"."""
    out = []
    for role, text in turns:
        if role not in ("user", "model"):
            raise ValueError(f"turn role must be 'user' or 'model', not {role!r}")
        out.append({"role": role, "parts": [{"text": text}]})
    content: dict[str, Any] = {"turnComplete": turn_complete}
    if out:
        content = {"turns": out, "turnComplete": turn_complete}
    return {"clientContent": content}


# --------------------------------------------------------------------------
# Server events


@dataclass(frozen=True)
class ServerEvent:
    """Base class of everything `parse_server_frame` yields."""


@dataclass(frozen=True)
class SetupComplete(ServerEvent):
    session_id: str | None = None


@dataclass(frozen=True)
class AudioChunk(ServerEvent):
    """Reply audio: s16le mono PCM at `rate` Hz, from the part's `audio/pcm;rate=NNNN`
    label (24000 when the label names no rate; 8000..48000, else a ProtocolError)."""

    pcm: bytes = field(repr=False)
    rate: int = OUTPUT_RATE

    def __repr__(self) -> str:  # audio bytes are noise in logs
        return f"AudioChunk({len(self.pcm)} bytes @ {self.rate} Hz)"


@dataclass(frozen=True)
class ModelText(ServerEvent):
    text: str


@dataclass(frozen=True)
class InputTranscript(ServerEvent):
    text: str
    finished: bool = False


@dataclass(frozen=True)
class OutputTranscript(ServerEvent):
    text: str
    finished: bool = False


@dataclass(frozen=True)
class Interrupted(ServerEvent):
    pass


@dataclass(frozen=True)
class GenerationComplete(ServerEvent):
    pass


@dataclass(frozen=True)
class TurnComplete(ServerEvent):
    reason: str | None = None
    interaction_status: str | None = None
    waiting_for_input: bool = False


@dataclass(frozen=True)
class FunctionCall:
    """One call; `args` is a cleaned JSON object (strings cleaned, bounded in depth/size).

    `problem` says why the arguments were unusable (not an object, too deep, too
    big); `args` is then empty, and the caller should answer with an error rather
    than run the tool on guesses.
    """

    id: str | None
    name: str
    args: Mapping[str, Any]
    problem: str | None = None


@dataclass(frozen=True)
class ToolCall(ServerEvent):
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True)
class ToolCallCancellation(ServerEvent):
    ids: tuple[str, ...]


@dataclass(frozen=True)
class GoAway(ServerEvent):
    #: seconds until the server closes; None when it did not say
    time_left_s: float | None


@dataclass(frozen=True)
class ResumptionUpdate(ServerEvent):
    new_handle: str | None
    resumable: bool
    last_consumed_index: int | None = None


@dataclass(frozen=True)
class Usage(ServerEvent):
    prompt_tokens: int | None
    response_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True)
class Unknown(ServerEvent):
    """A field we do not use; kept so it can be logged, never fatal."""

    key: str
    excerpt: str


@dataclass(frozen=True)
class ProtocolError(ServerEvent):
    """Input we could not make sense of; the rest of the frame is still used."""

    message: str
    excerpt: str = ""


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
    return [SetupComplete(_identifier(raw, HANDLE_LIMIT) if isinstance(raw, str) else None)]


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
        call_id = _identifier(raw_id, NAME_LIMIT)
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
        return _clean_json(raw, 0, [ARGS_MAX_ITEMS]), None
    except _ArgsTooBig:
        return {}, f"args nested deeper than {ARGS_MAX_DEPTH} or larger than {ARGS_MAX_ITEMS} values"


def _tool_call_cancellation(value: Any) -> list[ServerEvent]:
    ids = value.get("ids") if isinstance(value, dict) else None
    if not isinstance(ids, list):
        return [ProtocolError("toolCallCancellation without ids", _excerpt(repr(value)))]
    cleaned = [_identifier(i, NAME_LIMIT) for i in ids]
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
    handle = _identifier(raw, HANDLE_LIMIT) if isinstance(raw, str) else None
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
