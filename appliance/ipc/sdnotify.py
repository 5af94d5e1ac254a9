"""Telling systemd how the daemon is doing, without libsystemd.

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named in
$NOTIFY_SOCKET (a leading '@' means Linux's abstract namespace). Outside systemd the
variable is unset and every call is a cheap no-op, so the daemon calls these freely.

Notifying must never hurt the appliance: nothing here raises, the socket is non-blocking
(a full receive queue drops the message rather than stalling the event loop), and a
broken socket is logged once rather than on every watchdog tick.

The watchdog is pinged from a task on the daemon's event loop and only while the audio
callbacks are demonstrably running, so a wedged loop *or* a wedged audio thread stops
the pings and systemd restarts the service (hardware notes §5.1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

_error_logged = False


def _log_failure_once(message: str, *args: object) -> None:
    global _error_logged
    if _error_logged:
        log.debug(message, *args)
        return
    _error_logged = True
    log.warning(message + " (further notify errors are logged at debug level)", *args)


def _socket_address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=idle") as one message; True when it was sent."""
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw or not states:
        return False
    address = _socket_address(raw)
    if address is None:
        _log_failure_once("sd_notify: unsupported NOTIFY_SOCKET %r (expected a path or @name)", raw)
        return False
    # a newline inside a value would smuggle in another assignment
    message = "\n".join(" ".join(state.splitlines()) for state in states)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode("utf-8", errors="replace"))
    except OSError as exc:
        _log_failure_once("sd_notify to %s failed: %s", raw, exc.strerror or exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """The service is up (systemd's Type=notify start completes); optionally with a status line."""
    return notify("READY=1", f"STATUS={status}") if status else notify("READY=1")


def status(text: str) -> bool:
    """The free-form line `systemctl status` shows."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def stopping() -> bool:
    return notify("STOPPING=1")


def reloading() -> bool:
    """A reload began; `ready()` ends it.

    MONOTONIC_USEC (CLOCK_MONOTONIC, which time.monotonic reads on Linux) is what systemd's
    Type=notify-reload needs to tell this reload from an earlier one; plain Type=notify ignores it.
    """
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when systemd wants none from us."""
    usec = os.environ.get("WATCHDOG_USEC", "").strip()
    pid = os.environ.get("WATCHDOG_PID", "").strip()
    if not usec:
        return None
    try:
        if pid and int(pid) != os.getpid():
            return None  # the watchdog is meant for another process (e.g. a parent wrapper)
        micros = int(usec)
    except ValueError:
        log.warning("ignoring malformed watchdog settings WATCHDOG_USEC=%r WATCHDOG_PID=%r", usec, pid)
        return None
    if micros <= 0:
        return None
    return micros / 1_000_000 / 2


@dataclass(frozen=True)
class Check:
    """A named health check: the name is what the log says when it fails."""

    name: str
    passes: Callable[[], bool]

    def __call__(self) -> bool:
        return self.passes()


def _check_name(check: Callable[[], bool]) -> str:
    if isinstance(check, Check):
        return check.name
    return getattr(check, "__name__", None) or repr(check)


class Watchdog:
    """Pings systemd's watchdog every `interval` seconds, but only while every check passes.

    Running on the event loop is itself the "loop alive" check. When a check fails the
    pings stop and the failing check is logged once; if it recovers before systemd's
    timeout the pings resume (a short stall is not worth a restart), otherwise systemd
    kills and restarts the service.
    """

    def __init__(self, interval: float, checks: Sequence[Callable[[], bool]]) -> None:
        if interval <= 0:
            raise ValueError("the watchdog interval must be positive")
        self.interval = interval
        self.checks = list(checks)
        self.failing: str | None = None
        self.pings_sent = 0

    def first_failure(self) -> str | None:
        """The name of the first failing check (a check that raises fails), or None."""
        for check in self.checks:
            try:
                passed = bool(check())
            except Exception as exc:  # a broken check must not kill the watchdog task
                return f"{_check_name(check)} (raised {type(exc).__name__}: {exc})"
            if not passed:
                return _check_name(check)
        return None

    def tick(self) -> bool:
        """Evaluate the checks once and ping if they pass; True when a ping was sent."""
        failure = self.first_failure()
        if failure is not None:
            if self.failing is None:
                log.error("watchdog: %s failed; no longer pinging systemd, which will restart the service", failure)
            self.failing = failure
            return False
        if self.failing is not None:
            log.warning("watchdog: %s recovered; pinging systemd again", self.failing)
            self.failing = None
        if watchdog():
            self.pings_sent += 1
            return True
        return False

    async def run(self) -> None:
        """Tick forever; cancel the task to stop."""
        while True:
            self.tick()
            await asyncio.sleep(self.interval)
