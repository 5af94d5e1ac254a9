"""What travels on the control socket, shared by the server and `appliance ctl`.

One JSON object per line goes in, one comes out (`{"ok": true, ...}` or
`{"ok": false, "error": "..."}`). The names here are the ones both ends must agree on:
the command words, the longest line, how a line is encoded, and the errors. Kept free
of asyncio so that neither end pulls in the other.
"""

from __future__ import annotations

import json
from typing import Any

KNOWN_COMMANDS: tuple[str, ...] = (
    "status", "press", "release", "tap", "stop", "volume", "new-conversation", "timers", "night", "mute", "say",
)
#: the longest request line the server reads; the client reads replies up to four times this
MAX_REQUEST_BYTES = 64 * 1024
#: one short line, yet room for a sentence of ours around the service's whole close reason (a close
#: frame holds at most 123 bytes); only a reason made mostly of escaped control characters is cut
_MAX_ERROR_CHARS = 300

Reply = dict[str, Any]


class ControlError(Exception):
    """The control socket could not be set up or used; the message is one line for a person."""


class CommandError(Exception):
    """A request is refused (by a handler, or by `ctl` before sending); its text is the error as is."""


def one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """Error texts travel on a line-based protocol and end up in a terminal: one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def encode_line(message: Reply) -> bytes:
    """One JSON line. A lone surrogate (from a client's own \\udXXX escape) cannot be UTF-8, so
    it goes out as a JSON \\u escape again instead of failing the whole message."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace") + b"\n"


def is_int(value: Any) -> bool:
    """A JSON whole number; JSON's true and false are not numbers here, though Python's bool is an int."""
    return isinstance(value, int) and not isinstance(value, bool)
