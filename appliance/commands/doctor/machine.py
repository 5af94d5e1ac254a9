"""What the checks use of the machine, and how they wait on it without hanging doctor.

Everything a check touches outside Python (commands, DNS, TLS, sound cards, GPIO, the
clock, the disk) comes from `DoctorEnv`, so tests can swap in stand-ins where this machine
has no real part.  Blocking work runs on daemon threads of our own rather than the event
loop's executor: `asyncio.run` waits for executor threads at exit, so a hung lookup there
would hang doctor after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from appliance.live.endpoint import endpoint_url
from appliance.settings.schema import Config

__all__ = [
    "CLOSE_WAIT_S",
    "COMMAND_TIMEOUT_S",
    "CheckContext",
    "CommandResult",
    "DoctorEnv",
    "blocking",
    "endpoint_parts",
    "first_line",
    "os_error_text",
    "release",
    "run_command",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_TIMEOUT_S = 4.0
#: how long closing a device may take before doctor stops waiting for it
CLOSE_WAIT_S = 3.0


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str = ""


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run a short command and capture its output; never raises (a failure is a result)."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return CommandResult(-1, "", f"no answer within {timeout:g} s")
    except OSError as exc:
        return CommandResult(127, "", exc.strerror or str(exc))
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _open_pyaudio() -> Any:
    from appliance.audio.devices import open_pyaudio

    return open_pyaudio()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DoctorEnv:
    """What the checks use of the machine; every field can be replaced in tests."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    which: Callable[[str], str | None] = shutil.which
    run: Callable[[Sequence[str], float], CommandResult] = run_command
    getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo
    ssl_context: Callable[[], ssl.SSLContext] = ssl.create_default_context
    #: a gpiozero pin factory; None means gpiozero's default (lgpio on a Pi)
    pin_factory: Any = None
    #: makes a fresh `pyaudio.PyAudio()`; raises ImportError when PyAudio is missing
    pa_factory: Callable[[], Any] = _open_pyaudio
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    now: Callable[[], datetime] = _utc_now
    #: how long one check may take before it counts as failed
    check_timeout_s: float = 10.0
    #: how much microphone audio the microphone check listens to
    mic_seconds: float = 1.0


@dataclass
class CheckContext:
    """What every check is handed: the config under test, the machine it runs on, and how it will be used."""

    cfg: Config
    env: DoctorEnv
    #: `doctor --keyboard`: the owner will press with `appliance run --keyboard`, so no GPIO button is needed
    keyboard: bool = False


async def blocking(fn: Callable[[], T], *, name: str = "doctor") -> T:
    """Run `fn` on a daemon thread and await its result.

    Not the loop's default executor: if `fn` never returns, a daemon thread does not keep
    the process alive at exit, while an executor thread would make `asyncio.run` wait for it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


async def release(fn: Callable[[], object]) -> None:
    """Close something on a thread, waiting at most CLOSE_WAIT_S (also while being cancelled)."""
    task = asyncio.ensure_future(blocking(fn, name="doctor-close"))
    with contextlib.suppress(BaseException):
        await asyncio.wait({task}, timeout=CLOSE_WAIT_S)
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            log.debug("closing failed: %s", exc)


def endpoint_parts(cfg: Config) -> tuple[str, str, int]:
    """(scheme, host, port) of the configured endpoint."""
    parts = urlsplit(endpoint_url(cfg.live))
    scheme = parts.scheme or "wss"
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, parts.hostname or "", port or (443 if scheme == "wss" else 80)


def first_line(text: str) -> str:
    """The first non-blank line of a tool's output, cut short enough for one report line."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:160]
    return ""


def os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
