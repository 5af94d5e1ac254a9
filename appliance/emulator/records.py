"""What the emulator remembers about each connection, message and turn, for tests to assert on.

No record ever holds an API key or token: only whether one was given and where (header or URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.emulator.schema import decode_base64

__all__ = ["ConnectionRecord", "Received", "TurnEnding", "TurnRecord", "scrub_blobs"]

#: How a turn's reply ended, as the client saw it on the wire:
#: "complete"      generationComplete, then the last turnComplete (IDLE when statuses are on);
#: "interrupted"   barge-in: interrupted, then turnComplete;
#: "interrupted_no_turn_complete"  barge-in with ``barge-no-complete``: interrupted and nothing after;
#: "superseded"    queued behind another reply and replaced before it began (nothing was sent for it);
#: "disconnected"  the connection ended first (drop, close, or a reply that never came).
TurnEnding = Literal["complete", "interrupted", "interrupted_no_turn_complete", "superseded", "disconnected"]


@dataclass
class ConnectionRecord:
    id: int
    path: str  # request path without the query string (the query may hold a key)
    api_version: str
    endpoint: str  # "BidiGenerateContent" or "BidiGenerateContentConstrained"
    has_key: bool
    key_in_url: bool  # True if the credential came as ?key= / ?access_token= (our client must never do that)
    user_agent: str | None
    opened_at: float  # loop.time()
    #: the client's Sec-WebSocket-Extensions offer (None: it asked for no compression)
    extensions: str | None = None
    setup: dict[str, Any] | None = None  # normalised (camelCase) setup body, once accepted
    model: str | None = None  # model id without "models/"
    resumed_handle: str | None = None
    restored_turns: int | None = None
    setup_complete: bool = False
    early_messages: int = 0  # messages the client sent before setupComplete went out
    activity_restarts: int = 0  # activityStart while an activity was already open
    ignored_audio_chunks: int = 0
    handles_issued: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: Literal["server", "client"] | None = None
    closed_at: float | None = None

    @property
    def closed(self) -> bool:
        return self.closed_by is not None


@dataclass
class Received:
    """One client frame as received. Audio/blob ``data`` is replaced by its decoded byte length."""

    conn_id: int
    time: float  # time.monotonic()
    kind: str  # setup | clientContent | realtimeInput | toolResponse | contextUpdate | invalid
    message: dict[str, Any] | None  # as sent (original casing), blobs scrubbed; None for non-JSON frames
    pcm: bytes | None = None  # decoded realtimeInput audio, at pcm_rate
    pcm_rate: int | None = None


@dataclass
class TurnRecord:
    conn_id: int
    source: Literal["audio", "text", "clientContent"]
    user_pcm: bytes = b""  # the activity's audio at 16 kHz (capped, see EmulatorConfig.max_activity_seconds)
    input_text: str = ""  # transcript sent back (or the text the client sent)
    reply_pcm: bytearray = field(default_factory=bytearray)  # 24 kHz PCM actually sent
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id","name","args"} as sent
    skipped_tool_calls: list[str] = field(default_factory=list)  # scripted calls to functions not declared
    tool_responses: list[dict[str, Any]] = field(default_factory=list)  # functionResponses (camelCase)
    cancelled_tool_calls: list[str] = field(default_factory=list)
    audio_truncated: bool = False  # the activity ran past the cap; the rest was dropped
    #: how the model scheduled this turn's calls, from the declaration (see Scenario); None without calls
    tool_behavior: Literal["BLOCKING", "NON_BLOCKING"] | None = None
    interrupted: bool = False
    generation_complete: bool = False
    #: the turn's last turnComplete went out (a NON_BLOCKING turn's IN_PROGRESS one does not count)
    turn_complete: bool = False
    #: one entry per turnComplete sent for this turn: its interactionStatus, or None when it had none
    turn_completes: list[str | None] = field(default_factory=list)
    ending: TurnEnding | None = None  # None while the turn is still going

    @property
    def ended(self) -> bool:
        return self.ending is not None


def _scrub(value: Any) -> Any:
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if not isinstance(value, dict):
        return value
    has_mime = "mimeType" in value or "mime_type" in value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if has_mime and key == "data" and isinstance(item, str):
            decoded = decode_base64(item)
            out[key] = len(decoded) if decoded is not None else f"<invalid base64, {len(item)} chars>"
        else:
            out[key] = _scrub(item)
    return out


def scrub_blobs(message: Any) -> Any:
    """Copy a client message with every Blob's base64 ``data`` replaced by its byte length."""
    return _scrub(message)
