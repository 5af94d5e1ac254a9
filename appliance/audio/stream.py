"""What the microphone and the speaker share: one PortAudio stream, kept open.

Both open their device once and keep it open for the life of the daemon (no open
latency, no pops), both are watched by the daemon through the time of their last
callback, and both may have to be reopened after a USB device comes back.
"""

from __future__ import annotations

import time
from typing import Any

from appliance.audio.devices import AudioDeviceError, pa_sample_format


class DeviceStream:
    """The stream, the PyAudio that owns it, and the liveness clock."""

    def __init__(self, pa: Any = None) -> None:
        self._pa = pa
        self._owns_pa = pa is None
        self._stream: Any = None
        self._format: Any = None
        #: time.monotonic() of the latest PortAudio callback; the daemon's watchdog reads it.
        self.last_callback_at = 0.0

    @property
    def format(self) -> Any:
        """The format the stream is open with, or None while closed."""
        return self._format

    @property
    def running(self) -> bool:
        return self._stream is not None

    def seconds_since_callback(self) -> float:
        return time.monotonic() - self.last_callback_at

    def _open_stream(self, device: Any, fmt: Any, *, output: bool) -> Any:
        """Open (not start) the device at `fmt`, calling the subclass's `_callback` on PortAudio's thread.

        AudioDeviceError says what to check.
        """
        what = "speaker" if output else "microphone"
        direction = (
            {"output": True, "output_device_index": device.index}
            if output
            else {"input": True, "input_device_index": device.index}
        )
        try:
            return self._pa.open(
                format=pa_sample_format(fmt.sample_format),
                channels=fmt.channels,
                rate=fmt.rate,
                frames_per_buffer=fmt.frames_per_buffer,
                stream_callback=self._callback,
                start=False,
                **direction,
            )
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(
                f'cannot open {what} "{device.name}" at {fmt.describe()}: {exc}; '
                "is another program using it? (check with: fuser -v /dev/snd/*)"
            ) from None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                if stream.is_active():
                    stream.stop_stream()  # returns after the last callback: the format can go after this
            except OSError:
                pass  # already stopped, or the device is gone: closing is all that is left
            try:
                stream.close()
            except OSError:
                pass
        self._format = None
        self._after_close()

    def _after_close(self) -> None:
        """Drop whatever the closed stream left behind (a subclass's queues)."""

    def _forget_pa(self) -> None:
        """Terminate a PyAudio we created, so the next one rescans the devices."""
        if self._owns_pa and self._pa is not None:
            self._pa.terminate()
            self._pa = None
