"""Logging to stderr, with syslog priorities when journald reads the stream.

Under systemd, `JOURNAL_STREAM` is set and journald understands a `<N>` prefix on
each line as the priority, so `journalctl -p warning` works without a journald
library.  Everywhere else a timestamped line is friendlier.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from .secret import RedactingFilter

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


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
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every frame at debug; keep it quiet unless asked for
    logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))
    return redactor
