"""The process's one PortAudio, shared by the microphone and the speaker, and rescanning it.

PortAudio lists devices once, when it is initialised, and counts initialisations: while any PyAudio
instance in the process is alive, a new one gets the same old list. So two PyAudio instances do not
give two independent rescans; a rescan means terminating the one instance under every open stream.
`PortAudioHost` is that instance for both streams. A rescan pauses the other stream (closes it and
reopens it at once, keeping its buffers and callbacks), so it is done only when it disturbs nobody, or
when a sound card appeared that the current list does not know (a USB device plugged back in with a
new card number). A device that returns under its old ALSA name (the same card number, a PulseAudio
sink, a name from asound.conf) reopens from the old list and pauses nothing.

The streams themselves (`appliance.audio.stream.DeviceStream`) decide when to ask for a rescan; the host
only knows which of them are open, and pauses and resumes them around one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.audio.devices import AudioDeviceError, open_pyaudio, quiet_stderr, sound_cards

if TYPE_CHECKING:
    from appliance.audio.stream import DeviceStream

log = logging.getLogger(__name__)

#: Two rescans closer together than this reuse the first (both devices may be retrying at once).
RESCAN_MIN_INTERVAL_S = 1.0


class PortAudioHost:
    """The process's one PortAudio, lent to the microphone and the speaker, rescanned when worth it.

    `lock` serialises every open, close and rescan of the streams on this host (they run on worker
    threads; PortAudio's own calls are not meant to overlap).
    """

    def __init__(
        self,
        factory: Callable[[], Any] | None = None,
        *,
        cards: Callable[[], frozenset[str]] = sound_cards,
    ) -> None:
        self.lock = threading.RLock()
        self._factory = factory or open_pyaudio
        self._cards = cards
        self._pa: Any = None
        self._borrowed = False
        self._cards_listed: frozenset[str] = frozenset()
        self._initialised_at = float("-inf")
        self._streams: list[DeviceStream] = []
        #: completed rescans (re-initialisations after the first)
        self.rescans = 0

    @classmethod
    def borrowing(cls, pa: Any) -> PortAudioHost:
        """A host for a PyAudio-like object the caller owns: never terminated here, so never rescanned.

        What `Capture(pa=...)` and `Player(pa=...)` use; a `VirtualCard` lists its devices live, so for it
        reopening on the same object is a complete rescan anyway.
        """
        host = cls(lambda: pa, cards=frozenset)
        host._pa = pa
        host._borrowed = True
        host._initialised_at = time.monotonic()
        return host

    @property
    def can_rescan(self) -> bool:
        return not self._borrowed

    def pa(self) -> Any:
        """The PyAudio instance, created on first use (blocking: PortAudio probes every device).

        AudioDeviceError when PortAudio cannot start; ImportError when PyAudio is not installed.
        """
        with self.lock:
            if self._pa is None:
                cards = self._cards()
                try:
                    self._pa = self._factory()
                except OSError as exc:
                    raise AudioDeviceError(f"PortAudio cannot start: {exc}") from None
                self._cards_listed = cards
                self._initialised_at = time.monotonic()
            return self._pa

    def rescan_due(self, requester: DeviceStream) -> bool:
        """Is a rescan worth it for `requester`, whose device is not open?

        Yes when no other stream would have to pause, or when a sound card appeared since the last scan;
        not when the list was made after the device was lost and less than RESCAN_MIN_INTERVAL_S ago.
        """
        if self._borrowed:
            return False
        fresh = time.monotonic() - self._initialised_at < RESCAN_MIN_INTERVAL_S
        if fresh and self._initialised_at > requester._lost_at:
            return False
        if not any(s is not requester and s.running for s in self._streams):
            return True
        return bool(self._cards() - self._cards_listed)

    def rescan(self, requester: DeviceStream | None = None) -> None:
        """Terminate and re-create PortAudio so that it lists the devices present now.

        Every other open stream pauses: closed, then reopened by name right after (about the time of an
        open; its callbacks and buffers stay). One that cannot reopen goes absent and its watch takes over.
        """
        with self.lock:
            if self._borrowed:
                return
            paused = [s for s in self._streams if s is not requester and s.running]
            for stream in paused:
                stream._pause()
            try:
                self._terminate()
                self.pa()
                self.rescans += 1
            finally:
                for stream in paused:
                    stream._resume()

    def close(self) -> None:
        """Terminate PortAudio (a borrowed instance is left to its owner); close the streams first. Idempotent."""
        with self.lock:
            if not self._borrowed:
                self._terminate()

    async def close_async(self) -> None:
        """close() on a worker thread: terminating PortAudio can take a while."""
        await asyncio.to_thread(self.close)

    def _terminate(self) -> None:
        pa, self._pa = self._pa, None
        if pa is not None:
            try:
                with quiet_stderr():
                    pa.terminate()
            except Exception:  # noqa: BLE001 - a failing terminate must not keep the device from coming back
                log.exception("terminating PortAudio failed")

    def _attach(self, stream: DeviceStream) -> None:
        with self.lock:
            if stream not in self._streams:
                self._streams.append(stream)

    def _detach(self, stream: DeviceStream) -> None:
        with self.lock:
            if stream in self._streams:
                self._streams.remove(stream)
