"""The link's states, what a close means, and how long to wait before the next try.

Pure policy for `live.connection`: a close code and reason in, a kind and a delay out,
so every rule here is tested with plain values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from appliance.live.backoff import Backoff, config_error_backoff, quota_backoff, transient_backoff

#: Longest wait between tries while a question is held for the link: a few short
#: tries cost little, and the user is standing at the counter waiting.
HELD_RETRY_MAX_S = 2.0


class LinkState(str, enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    OFFLINE = "offline"  # transient failure; resuming with backoff
    ERROR = "error"  # the service refused our configuration; retrying slowly
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkChanged:
    """The connection changed state; `reason` is meant for the owner's eyes."""

    state: LinkState
    reason: str
    close_code: int | None = None


class CloseKind(enum.Enum):
    RESUME = "resume"  # planned end of a connection: reconnect at once
    TRANSIENT = "transient"  # network or server fault: reconnect with backoff
    CONFIG = "config"  # fix the configuration: retry slowly
    QUOTA = "quota"  # out of quota: retry very slowly
    BAD_HANDLE = "bad_handle"  # the resumption handle is no longer valid


def classify_close(code: int | None, reason: str) -> CloseKind:
    """What a close code and reason mean for the next connection attempt."""
    text = reason.lower()
    if code in (1007, 1008):
        if "session not found" in text:
            return CloseKind.BAD_HANDLE
        # reported as passing faults around tool responses, not configuration
        if "requested entity was not found" in text or "operation was aborted" in text:
            return CloseKind.TRANSIENT
        return CloseKind.CONFIG
    if code == 1011:
        if "quota" in text or "exceeded your current" in text:
            return CloseKind.QUOTA
        if "deadline expired" in text:
            return CloseKind.RESUME
    return CloseKind.TRANSIENT


class Retry:
    """One backoff schedule per kind of failure; all start over once a session is up."""

    def __init__(self, *, transient: Backoff | None = None, config_errors: Backoff | None = None) -> None:
        self._transient = transient or transient_backoff()
        self._config_errors = config_errors or config_error_backoff()
        self._quota = quota_backoff()

    def delay_after(self, kind: CloseKind, *, held: bool) -> float:
        """Seconds to wait before the next try; `held`: a user's question waits for the link."""
        if kind in (CloseKind.RESUME, CloseKind.BAD_HANDLE):
            if kind is CloseKind.RESUME:
                self._transient.reset()
            return 0.0
        if kind is CloseKind.CONFIG:
            return self._config_errors.next_delay()
        if kind is CloseKind.QUOTA:
            return self._quota.next_delay()
        delay = self._transient.next_delay()
        if held:
            # someone is waiting for this question: the long tail of the backoff
            # would outlast the hold, so keep trying every couple of seconds
            delay = min(delay, HELD_RETRY_MAX_S)
        return delay

    def skip_wait(self) -> None:
        """Someone pressed the button: the next transient try starts from the short end."""
        self._transient.reset()

    def connected(self) -> None:
        self._transient.reset()
        self._config_errors.reset()
        self._quota.reset()
