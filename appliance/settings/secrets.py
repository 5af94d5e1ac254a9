"""Keep the API key out of logs, reprs, exception texts and pickles.

`Secret` wraps the key so that printing or formatting it by accident shows a
placeholder; only an explicit `reveal()` yields the value.  `RedactingFilter`
is the second line of defence: attached to log handlers, it rewrites every
record so that a revealed key that slipped into a message, its `%s`
arguments or a traceback is replaced by ``[redacted]`` before any handler
formats it.

The names of where the key comes from (`API_KEY_ENV`, `CREDENTIAL_NAME`) live here too, so
every message that tells the owner where to put the key names the same places;
`appliance.settings.keys` does the reading.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from appliance.atomicfile import FileRefused, read_regular_file
from appliance.settings.errors import ConfigError

__all__ = [
    "API_KEY_ENV",
    "CREDENTIAL_NAME",
    "NO_API_KEY",
    "read_secret_text",
    "REDACTED",
    "RedactingFilter",
    "Secret",
    "install_redaction",
]

REDACTED = "[redacted]"
_PLACEHOLDER = "Secret('****')"

#: where the API key comes from first: this environment variable
API_KEY_ENV = "GEMINI_API_KEY"
#: then the systemd credential of this name (LoadCredential= in the unit)
CREDENTIAL_NAME = "gemini-api-key"

#: what the owner reads when no key is configured: `ask` prints it, the daemon shows it
NO_API_KEY = (
    f"no API key: set {API_KEY_ENV}, or live.api_key_file in the config, "
    f"or use the systemd credential {CREDENTIAL_NAME}"
)


class Secret:
    """An API key or token that never prints its value.

    `repr()`, `str()` and `format()` all give ``Secret('****')``.  Pickling and
    copying through pickle's protocol raise `TypeError`, so the value cannot be
    written to disk in clear text by accident.  Equality compares values in
    constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret expects a str value")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """Return the clear-text value; call only where it is sent on the wire."""
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return _PLACEHOLDER

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(_PLACEHOLDER, format_spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled (that would store the key in clear text)")

    def __copy__(self) -> Secret:
        return self  # immutable, so sharing is a correct copy

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


def _as_text(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


#: the shortest value worth redacting (Google API keys are 39 characters)
MIN_REDACTED = 8


class RedactingFilter(logging.Filter):
    """Replace every known secret in a log record with ``[redacted]``.

    The message is formatted once (``msg % args``), redacted and stored back
    with ``args`` cleared, so later formatting cannot reintroduce a secret.
    Exception and stack text are rendered with the default formatter,
    redacted and cached in ``exc_text``; ``exc_info`` is then dropped so no
    formatter can render the raw traceback again.  Extra attributes passed via
    ``extra=`` are not inspected.  The filter never drops a record.
    """

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for value in secrets:
            self.add(value)

    def add(self, value: str | Secret) -> None:
        """Start redacting `value` too.

        Values shorter than `MIN_REDACTED` are ignored: no real key or token is that
        short, and replacing every "k" of a test key would garble every log line.
        """
        text = _as_text(value)
        if len(text) < MIN_REDACTED:
            return
        with self._lock:
            if text in self._secrets:
                return
            # Longest first, so a secret that contains another is removed whole.
            self._secrets = tuple(sorted((*self._secrets, text), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Return `text` with every known secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must still be redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_redaction(secret: Secret | str, *, only_existing: bool = False) -> RedactingFilter:
    """Redact `secret` on every handler the root logger has *now*.

    Call it after logging is configured: handlers added later are not covered
    (attach the returned filter to them yourself).  Handlers that already carry
    a `RedactingFilter` get the secret added to that filter; the others share
    one new filter, which is returned.
    """
    shared = RedactingFilter([secret])
    for handler in logging.getLogger().handlers:
        existing = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        if existing:
            for redacting in existing:
                redacting.add(secret)
        elif not only_existing:  # only_existing: leave handlers we did not set up alone
            handler.addFilter(shared)
    return shared


def read_secret_text(path: Path, label: str, max_bytes: int, what: str) -> str:
    """The one secret a small file holds (an API key, a server's token), stripped; ConfigError
    (one line, `label` naming the file, never its content) when it is refused, unreadable or empty."""
    try:
        text = read_regular_file(path, max_bytes).decode("utf-8")
    except FileRefused as exc:
        if exc.problem.startswith("is larger"):
            raise ConfigError(f"{label} {exc.problem}; it must hold only {what}") from None
        raise ConfigError(f"{label} {exc.problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label} cannot be read: {exc.strerror or exc}") from None
    secret = text.strip()
    if not secret:
        raise ConfigError(f"{label} is empty; put {what} in it")
    return secret
