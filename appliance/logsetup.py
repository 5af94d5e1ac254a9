"""Logging to stderr, with syslog priorities when journald reads the stream.

Under systemd, `JOURNAL_STREAM` is set and journald understands a `<N>` prefix on
each line as the priority, so `journalctl -p warning` works without a journald
library.  Everywhere else a timestamped line is friendlier.

Log messages carry text from outside (transcripts, labels, close reasons), so every
record is made one physical line before it is written: `OneLineFilter` escapes control
characters repr-style (`appliance.textsafe` owns the escaping), so a frame cannot forge a
log line or send escape sequences to the terminal that shows the journal.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from appliance.settings.secrets import RedactingFilter
from appliance.textsafe import escape_controls, escape_controls_keeping_newlines

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class OneLineFilter(logging.Filter):
    """Makes the message of every record one line with its control characters escaped.

    The message is formatted here (``msg % args``), escaped and stored back with ``args``
    cleared, so no formatter can reintroduce the raw text. A traceback or stack attached to
    the record keeps its line breaks (it is many lines by nature) but has every other control
    character escaped, so an exception message from outside cannot carry escape sequences.
    The filter never drops a record, and running it twice changes nothing more.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string still gets logged, escaped
            message = f"{record.msg!s} {record.args!r}"
        record.msg = escape_controls(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape_controls_keeping_newlines(record.exc_text)
        if record.stack_info:
            record.stack_info = escape_controls_keeping_newlines(record.stack_info)
        return True


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message` - journald adds its own timestamp."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        # every physical line keeps the priority, so a traceback stays one severity
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def under_journald(stream: TextIO) -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value or ":" not in value:
        return False
    try:
        device, inode = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == device and st.st_ino == inode


def setup_logging(level: str = "info", stream: TextIO | None = None) -> RedactingFilter:
    """Configure the root logger once; returns the redaction filter so secrets can be added."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if under_journald(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    redactor = RedactingFilter(())
    handler.addFilter(redactor)
    handler.addFilter(OneLineFilter())  # after redaction, which needs the raw text
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every frame at debug; keep it quiet unless asked for
    logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))
    return redactor
