"""Making untrusted text safe to show: one line, no terminal controls.

Text from outside (a transcript, a timer label, a close reason, a daemon's reply) may
carry escape sequences that move a terminal's cursor, or line breaks that forge a log
line.  Everything here escapes such characters repr-style.  Only `re` is imported, and
the patterns are compiled on first use, so `appliance ctl` pays for neither logging nor
a regex it does not need.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["escape_controls", "escape_controls_keeping_newlines", "quoted"]

# C0 controls and DEL, C1 controls, surrogates (only lone ones can occur in a str), the
# line and paragraph separators that str.splitlines() breaks on, and the bidi marks,
# embeddings, overrides and isolates that can make a line read differently from its bytes.
_OTHER_UNSAFE = r"\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@cache
def _unsafe(*, keep_newlines: bool) -> re.Pattern[str]:
    controls = r"\x00-\x09\x0b-\x1f" if keep_newlines else r"\x00-\x1f"
    return re.compile(f"[{controls}{_OTHER_UNSAFE}]")


def _escape_char(char: str) -> str:
    """The repr-style escape of one character: \\n, \\x1b, \\u202e, \\ud800."""
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """`text` with every control, lone surrogate and bidi override escaped, so it stays one line.

    Backslashes are left alone: ordinary messages (paths, regexes) read as before, at the
    price that a literal backslash-n in the text looks like an escaped newline.
    """
    return _unsafe(keep_newlines=False).sub(lambda match: _escape_char(match.group()), text)


def escape_controls_keeping_newlines(text: str) -> str:
    """`escape_controls` for text that is many lines by nature (a traceback): newlines stay."""
    return _unsafe(keep_newlines=True).sub(lambda match: _escape_char(match.group()), text)


def quoted(text: object, limit: int = 200) -> str:
    """A quoted, escaped, bounded rendering of untrusted text for a log message or an error.

    Like repr() of a str (quotes, backslashes and controls escaped), but at most about
    `limit` characters of escaped text; a longer one ends in "..." and says how long it was.
    """
    text = text if isinstance(text, str) else str(text)
    budget = max(limit, 1)
    out: list[str] = []
    used = 0
    for char in text:
        if char == "\\" or char == "'":
            piece = "\\" + char
        elif not char.isprintable():  # every character `_unsafe` matches, and the rest repr() escapes
            piece = _escape_char(char)
        else:
            piece = char
        if used + len(piece) > budget:
            return "'" + "".join(out) + f"'... ({len(text)} chars)"
        out.append(piece)
        used += len(piece)
    return "'" + "".join(out) + "'"
