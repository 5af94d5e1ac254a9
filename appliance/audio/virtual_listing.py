"""The part of PyAudio's API that the audio path calls on `pa`, answered from a list of virtual devices.

Enumeration, the host API, format checks and `open()`, with PyAudio's dicts, refusals and error codes.
What the list holds and how a stream is opened are left to the subclasses: `VirtualCard` lists what is
plugged in right now, a `VirtualPortAudio` view what was plugged in when it was made, as PortAudio does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.audio.pa_constants import (
    SAMPLE_SIZES,
    paAbort,
    paComplete,
    paContinue,
    paFloat32,
    paFramesPerBufferUnspecified,
    paInDevelopment,
    paInputOverflow,
    paInt8,
    paInt16,
    paInt24,
    paInt32,
    paInvalidChannelCount,
    paInvalidDevice,
    paInvalidSampleRate,
    paNoDevice,
    paNotInitialized,
    paOutputUnderflow,
    paSampleFormatNotSupported,
    paUInt8,
    paUnanticipatedHostError,
)
from appliance.audio.virtual_device import DEFAULT_PERIOD_S, Direction, VirtualDevice

if TYPE_CHECKING:
    from appliance.audio.virtual_stream import StreamCallback, VirtualStream

HOST_API_NAME = "Virtual"


def device_info(device: VirtualDevice) -> dict[str, Any]:
    """PyAudio's device info dict for `device`."""
    latency = DEFAULT_PERIOD_S
    is_input = device.direction == "input"
    return {
        "index": device.index,
        "structVersion": 2,
        "name": device.name,
        "hostApi": 0,
        "maxInputChannels": device.channels if is_input else 0,
        "maxOutputChannels": 0 if is_input else device.channels,
        "defaultLowInputLatency": latency if is_input else -1.0,
        "defaultLowOutputLatency": -1.0 if is_input else latency,
        "defaultHighInputLatency": 4 * latency if is_input else -1.0,
        "defaultHighOutputLatency": -1.0 if is_input else 4 * latency,
        "defaultSampleRate": float(device.rate),
    }


def _refusal(error: type[Exception], reason: str, code: int) -> Exception:
    """PyAudio's ValueError carries (reason, code); PortAudio's OSError carries (errno=code, reason)."""
    return error(code, reason) if issubclass(error, OSError) else error(reason, code)


class DeviceListing:
    """The part of PyAudio's API that lists devices, checks formats and opens streams, over some listing.

    The card itself lists what is plugged in right now; a `VirtualPortAudio` lists what was plugged in
    when it was made, as PortAudio does.
    """

    # The constants, also reachable through the instance (code given only `pa` can use them).
    paInt16 = paInt16
    paInt32 = paInt32
    paFloat32 = paFloat32
    paContinue = paContinue
    paComplete = paComplete
    paAbort = paAbort
    paInputOverflow = paInputOverflow
    paOutputUnderflow = paOutputUnderflow

    # -- what the two kinds of listing say

    def _listed(self) -> tuple[VirtualDevice, ...]:
        raise NotImplementedError

    def _still_there(self, device: VirtualDevice) -> bool:
        """Whether a listed device can be used (it is plugged in, and not replugged since it was listed)."""
        return True

    def _is_terminated(self) -> bool:
        """Whether PortAudio is shut down for this listing (open() refuses then)."""
        raise NotImplementedError

    def _open_stream(self, device: VirtualDevice, frames: int, callback: StreamCallback) -> VirtualStream:
        """Open the one stream of `device`'s current plugging (OSError, as PortAudio's, when impossible)."""
        raise NotImplementedError

    # -- PyAudio: enumeration

    def get_device_count(self) -> int:
        return len(self._listed())

    def get_device_info_by_index(self, device_index: int) -> dict[str, Any]:
        return device_info(self._device(device_index))

    def get_device_info_by_host_api_device_index(
        self, host_api_index: int, host_api_device_index: int
    ) -> dict[str, Any]:
        self.get_host_api_info_by_index(host_api_index)
        return self.get_device_info_by_index(host_api_device_index)

    def get_default_input_device_info(self) -> dict[str, Any]:
        return device_info(self._default("input"))

    def get_default_output_device_info(self) -> dict[str, Any]:
        return device_info(self._default("output"))

    def get_host_api_count(self) -> int:
        return 1

    def get_default_host_api_info(self) -> dict[str, Any]:
        return self.get_host_api_info_by_index(0)

    def get_host_api_info_by_index(self, host_api_index: int) -> dict[str, Any]:
        if host_api_index != 0:
            raise OSError(paInvalidDevice, "Invalid host api info")
        listed = self._listed()

        def default(direction: Direction) -> int:
            return next((d.index for d in listed if d.direction == direction), paNoDevice)

        return {
            "index": 0,
            "structVersion": 1,
            "type": paInDevelopment,
            "name": HOST_API_NAME,
            "deviceCount": len(listed),
            "defaultInputDevice": default("input"),
            "defaultOutputDevice": default("output"),
        }

    def get_sample_size(self, format: int) -> int:  # noqa: A002 - PyAudio's parameter name
        try:
            return SAMPLE_SIZES[format]
        except KeyError:
            raise ValueError("Invalid format", paSampleFormatNotSupported) from None

    def get_format_from_width(self, width: int, unsigned: bool = True) -> int:
        formats = {1: paUInt8 if unsigned else paInt8, 2: paInt16, 3: paInt24, 4: paFloat32}
        if width not in formats:
            raise ValueError(f"Invalid width: {width}")
        return formats[width]

    def _device(self, index: object) -> VirtualDevice:
        listed = self._listed()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(listed):
            raise OSError(paInvalidDevice, "Invalid device index")
        return listed[index]

    def _default(self, direction: Direction) -> VirtualDevice:
        device = next((d for d in self._listed() if d.direction == direction), None)
        if device is None:
            raise OSError(paNoDevice, f"No Default {direction.capitalize()} Device Available")
        return device

    # -- PyAudio: formats and streams

    def is_format_supported(
        self,
        rate: float,
        input_device: int | None = None,
        input_channels: int | None = None,
        input_format: int | None = None,
        output_device: int | None = None,
        output_channels: int | None = None,
        output_format: int | None = None,
    ) -> bool:
        """True for a device's one native format; ValueError((reason, PortAudio error code)) otherwise."""
        if input_device is None and output_device is None:
            raise ValueError("Must specify stream format for input, output, or both", paInvalidDevice)
        if input_device is not None:
            self._check_format(input_device, "input", rate, input_channels, input_format, ValueError)
        if output_device is not None:
            self._check_format(output_device, "output", rate, output_channels, output_format, ValueError)
        return True

    def _check_format(
        self,
        index: object,
        direction: Direction,
        rate: object,
        channels: object,
        sample_format: object,
        error: type[Exception],
    ) -> VirtualDevice:
        try:
            device = self._device(index)
        except OSError:
            raise _refusal(error, "Invalid device", paInvalidDevice) from None
        if device.direction != direction or channels != device.channels:
            raise _refusal(error, "Invalid number of channels", paInvalidChannelCount)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or float(rate) != float(device.rate):
            raise _refusal(error, "Invalid sample rate", paInvalidSampleRate)
        if sample_format != device.pa_format:
            raise _refusal(error, "Sample format not supported", paSampleFormatNotSupported)
        if not self._still_there(device):
            # what PortAudio's ALSA host API says when the device behind a listed entry has gone
            raise _refusal(error, "Unanticipated host error", paUnanticipatedHostError)
        return device

    def open(
        self,
        rate: int,
        channels: int,
        format: int,  # noqa: A002 - PyAudio's parameter name
        input: bool = False,  # noqa: A002
        output: bool = False,
        input_device_index: int | None = None,
        output_device_index: int | None = None,
        frames_per_buffer: int = paFramesPerBufferUnspecified,
        start: bool = True,
        input_host_api_specific_stream_info: Any = None,
        output_host_api_specific_stream_info: Any = None,
        stream_callback: StreamCallback | None = None,
    ) -> VirtualStream:
        """Open a callback stream on a mic or a speaker, in its one native format (else OSError, as PortAudio)."""
        if not input and not output:
            raise ValueError("Must specify an input or output stream.")
        if input and output:
            raise ValueError("the virtual card has no full-duplex device; open input and output separately")
        if stream_callback is None:
            raise ValueError("the virtual card supports callback streams only; pass stream_callback")
        if self._is_terminated():
            raise OSError(paNotInitialized, "PortAudio not initialized")
        direction: Direction = "input" if input else "output"
        index = input_device_index if input else output_device_index
        if index is None:
            index = self._default(direction).index
        device = self._check_format(index, direction, rate, channels, format, OSError)
        if isinstance(frames_per_buffer, bool) or not isinstance(frames_per_buffer, int) or frames_per_buffer < 0:
            raise ValueError(f"frames_per_buffer must be a whole number of frames, got {frames_per_buffer!r}")
        frames = frames_per_buffer or max(1, round(device.rate * DEFAULT_PERIOD_S))
        stream = self._open_stream(device, frames, stream_callback)
        if start:
            stream.start_stream()
        return stream
