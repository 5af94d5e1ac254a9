"""Strings and values from the service, made safe where they enter.

Every string the service sends passes through `clean_text` on its way into an event
(transcripts, text, names, ids, tool arguments, handles), so later code can log it,
JSON-encode it, persist it and send it back without a UnicodeEncodeError or a runaway
length.  The bounds live here, once.
"""

from __future__ import annotations

from typing import Any

#: bounds for strings from the service (characters, after cleaning)
TEXT_LIMIT = 4096  # transcripts, model text, string values in tool arguments
NAME_LIMIT = 128  # tool names, call ids, argument keys, enum-like values
HANDLE_LIMIT = 4096  # resumption handles (opaque; a cut one would be useless, so too long = unusable)
#: bounds for a tool call's arguments: nesting depth and number of values in all
ARGS_MAX_DEPTH = 16
ARGS_MAX_ITEMS = 1000



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


def identifier(raw: Any, limit: int) -> str | None:
    """An opaque id/handle, only if it is a clean string within `limit`: a changed one would be wrong."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw:
        return None
    return raw if clean_text(raw, limit) == raw else None


class ArgsTooBig(Exception):
    pass


def clean_json(value: Any, depth: int, budget: list[int]) -> Any:
    """A cleaned copy of a JSON value: strings via clean_text, within depth and size bounds."""
    budget[0] -= 1
    if budget[0] < 0 or depth > ARGS_MAX_DEPTH:
        raise ArgsTooBig
    if isinstance(value, str):
        return clean_text(value, TEXT_LIMIT)
    if isinstance(value, dict):
        return {clean_text(str(k), NAME_LIMIT): clean_json(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, depth + 1, budget) for v in value]
    return value  # None, bool, int, float (strict JSON: no NaN/Infinity)
