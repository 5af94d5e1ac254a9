"""The Live wire's vocabulary: client messages we build and the events we read.

Builders turn our intentions into client messages (plain dicts, camelCase, one
top-level key each); the event dataclasses are what `live.parser` makes of a server
frame.  Nothing here touches a socket, a clock or a logger, so every rule of the wire
can be tested with plain data, and the session and the emulator can both be checked
against it.  The protocol's state (which turn a reply belongs to) is
`live.conversation`; the I/O is `live.connection`.

Builders never emit `null` (3.1 and later close 1007 on it) nor the deprecated
`mediaChunks`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from appliance.live.cleaning import clean_text
from appliance.live.profiles import ModelProfile

INPUT_RATE = 16000
OUTPUT_RATE = 24000
MIN_OUTPUT_RATE = 8000
MAX_OUTPUT_RATE = 48000


# --------------------------------------------------------------------------
# Client messages

#: asked at every setup for declarations that come and go (an MCP server's tools); it
#: must answer at once, with what is available then
FunctionSource = Callable[[], Sequence[Mapping[str, Any]]]
#: the one `behavior` a declaration may ask for itself, where the model's profile allows it
OWN_BEHAVIOR = "NON_BLOCKING"


@dataclass(frozen=True)
class SessionSettings:
    """Everything the `setup` message says, independent of where it came from."""

    model: str
    voice: str = "Kore"
    language: str = ""
    system_instruction: str = ""
    input_transcription: bool = True
    output_transcription: bool = True
    #: function declarations as {"name", "description", "parameters"} dicts, fixed for the
    #: life of the settings (the device's own tools); the profile decides the `behavior`
    #: field, unless a declaration says "behavior": "NON_BLOCKING" where the profile allows it
    functions: tuple[Mapping[str, Any], ...] = ()
    #: more declarations, asked for at each setup (so tools that came up since are declared
    #: in the next session); a name already declared is left out
    function_source: FunctionSource | None = None
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


def declared_functions(settings: SessionSettings) -> list[Mapping[str, Any]]:
    """The fixed declarations, then the source's as it answers now; the first of a name wins.

    Why: two declarations with one name would be refused by the service, and a call by
    that name could only go to one of them.
    """
    provided = settings.function_source() if settings.function_source is not None else ()
    chosen: dict[str, Mapping[str, Any]] = {}
    for fn in (*settings.functions, *provided):
        chosen.setdefault(str(fn.get("name", "")), fn)
    return list(chosen.values())


def effective_behavior(fn: Mapping[str, Any], profile: ModelProfile) -> str | None:
    """The `behavior` the declaration `fn` goes out with on this model (None: the field is left out).

    Its own NON_BLOCKING where the profile allows it, the profile's otherwise. The tool router
    asks the same question to know whether the model is waiting for a call's answer.
    """
    if fn.get("behavior") == OWN_BEHAVIOR and profile.non_blocking_tools:
        return OWN_BEHAVIOR
    return profile.tool_behavior


def _build_tools(settings: SessionSettings, profile: ModelProfile) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    functions = declared_functions(settings)
    if functions:
        declarations = []
        for fn in functions:
            decl = {k: _without_nulls(fn[k]) for k in ("name", "description", "parameters") if fn.get(k) is not None}
            behavior = effective_behavior(fn, profile)
            if behavior:
                decl["behavior"] = behavior
            declarations.append(decl)
        tools.append({"functionDeclarations": declarations})
    if settings.google_search and (profile.search_with_functions or not functions):
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


