"""How the emulator refuses a client: the close code and the reason text, worded like the service's.

Why one module: tests assert on these exact texts, so each is written once here and every part of the
emulator that closes a connection imports it. Reasons are cut to what a WebSocket close frame can carry.
"""

from __future__ import annotations

__all__ = [
    "DEADLINE_EXPIRED",
    "INTERNAL_ERROR",
    "INVALID_ARGUMENT",
    "INVALID_KEY",
    "MEDIA_CHUNKS_DEPRECATED",
    "NO_TURN",
    "ProtocolViolation",
    "SESSION_NOT_FOUND",
    "TEXT_WITHOUT_ACTIVITY",
    "UNREGISTERED_CALLER",
    "cut_reason",
    "invalid",
]

MAX_REASON_BYTES = 123  # the most a close frame's reason may hold, in UTF-8
INVALID_ARGUMENT = "Request contains an invalid argument."

UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
INVALID_KEY = "API key not valid. Please pass a valid API key."
NO_TURN = f"{INVALID_ARGUMENT} generic::invalid_argument: No turn to complete"
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
INTERNAL_ERROR = "Internal error encountered."
SESSION_NOT_FOUND = "BidiGenerateContent session not found"
MEDIA_CHUNKS_DEPRECATED = (f"{INVALID_ARGUMENT} realtimeInput.mediaChunks is deprecated; send realtimeInput.audio "
                           "or realtimeInput.video.")
TEXT_WITHOUT_ACTIVITY = (f"{INVALID_ARGUMENT} realtimeInput.text needs activityStart first (automatic activity "
                         "detection is off).")


class ProtocolViolation(Exception):
    """The client broke a rule; the connection is closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def invalid(reason: str) -> ProtocolViolation:
    """A malformed or invalid message: the service closes 1007."""
    return ProtocolViolation(1007, reason)


def cut_reason(reason: str, limit: int = MAX_REASON_BYTES) -> str:
    """Cut a close reason to the WebSocket limit (123 bytes of UTF-8) without splitting a character."""
    raw = reason.encode("utf-8")
    if len(raw) <= limit:
        return reason
    return raw[:limit].decode("utf-8", errors="ignore")
