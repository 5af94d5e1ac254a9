"""The settings' one error type, in a module of its own so that light code can raise it.

`appliance ctl` and the control socket's directory check raise it without importing the
schema's dataclasses.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration problem, described in one line that says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))
