"""The button, played on a laptop keyboard (`appliance run --keyboard`).

A terminal cannot report a key being held down, only keys being typed, so the
gestures are mapped onto single keys: Space is a tap, Enter starts a hold and
the next Enter ends it, `n` is a long hold (a new conversation), `q` quits.
The gestures are the same ones `GpioButton` reports, so the conductor cannot
tell the difference.

The terminal goes into cbreak mode (keys arrive one by one, not echoed; Ctrl-C
still interrupts) and is put back exactly as it was on `close()`.  Keys are
read with `loop.add_reader`, so nothing waits on the terminal.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import termios
from collections.abc import Callable
from typing import IO, Any

from appliance.console import print_now
from appliance.hw.button import ButtonError
from appliance.hw.gestures import Gesture

__all__ = ["HELP_LINE", "KeyboardButton"]

log = logging.getLogger(__name__)

HELP_LINE = "Keyboard button: Space = tap to talk, Enter = start/stop holding, n = new conversation, q = quit"

_SPACE = ord(" ")
_ENTERS = (ord("\n"), ord("\r"))
_READ_BYTES = 64


class KeyboardButton:
    """Reads single keys from a terminal and reports them as button gestures.

    Build it on the loop's thread; `on_gesture` and `on_quit` run there too.
    `n` reports exactly what a long physical hold would: PRESS, LONG_HOLD and
    RELEASE_HOLD (only LONG_HOLD if an Enter-hold is already going on).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_gesture: Callable[[Gesture], None],
        *,
        stream: IO[Any] | None = None,
        on_quit: Callable[[], None] | None = None,
        printer: Callable[[str], None] = print_now,
    ) -> None:
        self._loop = loop
        self._on_gesture = on_gesture
        self._on_quit = on_quit
        self._printer = printer
        self._holding = False
        self._saved: list[Any] | None = None
        self._reading = False
        self._closed = False
        stream = sys.stdin if stream is None else stream
        self._fd = _terminal_fd(stream)
        try:
            self._saved = termios.tcgetattr(self._fd)
            termios.tcsetattr(self._fd, termios.TCSANOW, _cbreak(self._saved))
            loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        except BaseException as exc:
            self.close()
            if isinstance(exc, (OSError, termios.error)):
                raise ButtonError(f"cannot read keys from the terminal ({exc}); use `appliance ctl`") from None
            raise
        self._show(HELP_LINE)

    @property
    def holding(self) -> bool:
        """True between the Enter that started a hold and the one that ends it."""
        return self._holding

    def close(self) -> None:
        """Stop reading and give the terminal back its settings.  Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._saved is not None:
            try:
                termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
            except termios.error as exc:  # the terminal is already gone
                log.debug("could not restore the terminal: %s", exc)

    def __enter__(self) -> KeyboardButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ on the loop

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        try:
            keys = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the terminal hung up
            keys = b""
            log.debug("terminal read failed: %s", exc)
        if not keys:
            log.warning("the terminal closed; the keyboard button stops (use `appliance ctl`)")
            self._stop_reading()
            return
        previous = None
        for key in keys:
            if key == ord("\n") and previous == ord("\r"):
                previous = None  # a CR LF pair is one Enter
                continue
            previous = key
            if self._closed:
                return
            self._key(key)

    def _key(self, key: int) -> None:
        if key == _SPACE:
            if not self._holding:  # a real button cannot be tapped while it is held
                self._emit(Gesture.PRESS)
                self._emit(Gesture.RELEASE_TAP)
        elif key in _ENTERS:
            self._holding = not self._holding
            self._emit(Gesture.PRESS if self._holding else Gesture.RELEASE_HOLD)
        elif key in (ord("n"), ord("N")):
            if self._holding:
                self._emit(Gesture.LONG_HOLD)
            else:
                self._emit(Gesture.PRESS)
                self._emit(Gesture.LONG_HOLD)
                self._emit(Gesture.RELEASE_HOLD)
        elif key in (ord("q"), ord("Q")):
            if self._on_quit is not None:
                self._on_quit()
        elif key in (ord("h"), ord("H"), ord("?")):
            self._show(HELP_LINE)

    def _show(self, line: str) -> None:
        """A line for the person at the keys; the default printer (console.print_now) flushes it."""
        self._printer(line)

    def _emit(self, gesture: Gesture) -> None:
        log.debug("keyboard gesture: %s", gesture.value)
        try:
            self._on_gesture(gesture)
        except Exception:  # a bug downstream must not stop the keyboard
            log.exception("handling the keyboard gesture %s failed", gesture.value)


def _terminal_fd(stream: IO[Any]) -> int:
    """The stream's file descriptor, if it is an interactive terminal."""
    advice = "--keyboard needs an interactive terminal on stdin; run it in a terminal, or use `appliance ctl`"
    try:
        fd = stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        raise ButtonError(advice) from None
    if not os.isatty(fd):
        raise ButtonError(advice)
    return fd


def _cbreak(attrs: list[Any]) -> list[Any]:
    """A copy of `attrs` with line editing and echo off, one key per read."""
    mode = [*attrs[:6], list(attrs[6])]
    mode[3] &= ~(termios.ECHO | termios.ICANON)  # lflag
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    return mode
