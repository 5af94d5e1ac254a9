"""How a setting's value appears in a message: short, and never a credential.

Values of keys whose name contains "key", "token", "secret" or "password" are shown as
``<hidden>`` unless the field says ``secret=False``; any text that looks like it carries a
credential (``key=`` / ``token=`` in a URL query, or a Google API key's shape) is hidden too.
Every error the settings raise goes through `show`, so a typo next to a key cannot leak it.
`closest` is the one "did you mean" guess every settings message makes for a mistyped name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["HIDDEN", "closest", "looks_like_credential", "name_looks_secret", "show"]

HIDDEN = "<hidden>"
_SECRET_WORDS = ("key", "token", "secret", "password")
_CREDENTIAL_IN_TEXT = re.compile(r"(key|token)=", re.IGNORECASE)
# Google API keys ("AIza" + 35 characters) and ephemeral tokens ("auth_tokens/...").
_CREDENTIAL_SHAPE = re.compile(r"AIza[0-9A-Za-z_\-]{30,}|auth_tokens/")
_MAX_SHOWN_VALUE = 80


def name_looks_secret(name: str) -> bool:
    """True for a key name whose value should not be shown (api_key, token_file, ...)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def looks_like_credential(text: str) -> bool:
    """True for text that carries a key: ``key=``/``token=`` or a key's shape."""
    return bool(_CREDENTIAL_IN_TEXT.search(text) or _CREDENTIAL_SHAPE.search(text))


def closest(word: str, options: Sequence[str]) -> str | None:
    """The option `word` is most likely a typo of, for a "did you mean" hint; case does not count."""
    by_lower = {option.lower(): option for option in options}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def show(value: Any, *, hidden: bool, limit: int | None = _MAX_SHOWN_VALUE) -> str:
    """The value as a person writes it, at most `limit` characters (None: whole), or ``<hidden>``.

    Strings are shown as repr() writes them, so a control character or a line break in a
    value cannot reach a terminal as itself.
    """
    if hidden:
        return HIDDEN
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) and abs(value) >= 10**_MAX_SHOWN_VALUE:
        text = f"a {value.bit_length()}-bit number"  # repr() of a huge int is slow, or refused
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v, hidden=False, limit=limit) for v in value) + "]"
    else:
        text = f"a {type(value).__name__}"
    if looks_like_credential(text):
        return HIDDEN
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text
