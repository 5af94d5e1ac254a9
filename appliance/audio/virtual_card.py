"""The demo's sound card: the part of PyAudio's API the audio path uses, backed by memory and a clock.

`appliance demo` must run the real capture and playback code on a machine with no sound card and maybe
without PortAudio. `VirtualCard` is handed to `Capture` and `Player` as their `pa=`: it offers one
microphone ("virtual-mic") and one speaker ("virtual-speaker"), each accepting exactly one native format
(by default an I2S-like 48 kHz stereo int32 microphone and a 48 kHz stereo int16 speaker), so the real
format probing, channel mixing, 32->16-bit conversion and resampling all run.

Each open stream gets its own daemon thread that calls the stream callback once per buffer, scheduled
from `time.monotonic()` at start plus a whole number of periods, so lateness never accumulates into
drift. `speed` shortens the periods (tests run at 4x). After a stall longer than a few periods the clock
is re-based and the next callback carries paInputOverflow / paOutputUnderflow, as a real card would
report; the queued utterance is kept whole rather than losing the stalled stretch.

The microphone delivers what `queue_input()` queued, on top of quiet room noise (about -60 dBFS: a real
mic is never digitally silent, and the VAD and level meters must cope with that). The speaker records
everything its callback returns; `write_output_wav()` saves it for a person to listen to.

`unplug(name)` and `plug(name)` take a device away and bring it back, as a USB plug would: a stream on an
unplugged device stops calling back, and the device returns at a new index. Used directly as `pa=`, the card
lists what is plugged in right now; `portaudio()` gives views that list devices the way real PyAudio
instances do, frozen at PortAudio's initialisation and shared while any instance is alive, so code that
must rescan after a replug can be tested against the same constraint it meets on a Pi.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from appliance.audio.resample import resample
from appliance.audio.wavio import write_wav

__all__ = ["MIC_NAME", "SPEAKER_NAME", "VirtualCard", "VirtualDevice", "VirtualPortAudio", "VirtualStream"]

log = logging.getLogger(__name__)

# PortAudio's constants (portaudio.h; pyaudio exports the same numbers). Defined here so that the card
# needs neither pyaudio nor libportaudio.
paFloat32 = 0x01
paInt32 = 0x02
paInt24 = 0x04
paInt16 = 0x08
paInt8 = 0x10
paUInt8 = 0x20
paContinue = 0
paComplete = 1
paAbort = 2
paInputUnderflow = 0x01
paInputOverflow = 0x02
paOutputUnderflow = 0x04
paOutputOverflow = 0x08
paPrimingOutput = 0x10
paFramesPerBufferUnspecified = 0
paNoDevice = -1
paInDevelopment = 0  # the host API type id PortAudio reserves for APIs without an official number
# Error codes, carried by the OSError/ValueError the card raises, as PyAudio's are.
paUnanticipatedHostError = -9999
paNotInitialized = -10000
paInvalidChannelCount = -9998
paInvalidSampleRate = -9997
paInvalidDevice = -9996
paSampleFormatNotSupported = -9994
paBadIODeviceCombination = -9993
paBadStreamPtr = -9988
paDeviceUnavailable = -9985
paCanNotReadFromACallbackStream = -9977
paCanNotWriteToACallbackStream = -9976

SampleFormat = Literal["int16", "int32"]
Direction = Literal["input", "output"]

MIC_NAME = "virtual-mic"
SPEAKER_NAME = "virtual-speaker"
HOST_API_NAME = "Virtual"

_FORMAT_CODES: dict[str, int] = {"int16": paInt16, "int32": paInt32}
_FORMAT_NAMES: dict[int, str] = {code: name for name, code in _FORMAT_CODES.items()}
_SAMPLE_SIZES: dict[int, int] = {paFloat32: 4, paInt32: 4, paInt24: 3, paInt16: 2, paInt8: 1, paUInt8: 1}

#: A stall longer than this many periods re-bases the clock (a real card's ring buffer would overrun).
MAX_LAG_PERIODS = 5
#: stop_stream()/close()/terminate() wait at most this long for a callback in progress.
JOIN_TIMEOUT_S = 2.0
#: Blocks quieter than this (int16 LSBs, about -78 dBFS) count as silence when trimming the WAV.
SILENCE_PEAK = 4
#: Silence kept before the first and after the last sound in the trimmed WAV.
TRIM_MARGIN_S = 0.05
#: Default period when a stream is opened with frames_per_buffer unspecified.
DEFAULT_PERIOD_S = 0.02


@dataclass(frozen=True)
class VirtualDevice:
    """One device of the card and the only format it accepts."""

    index: int
    name: str
    direction: Direction
    rate: int
    channels: int
    sample_format: SampleFormat
    serial: int = 0  # how many times it was plugged back in: a new plugging is a new device to PortAudio

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<i2" if self.sample_format == "int16" else "<i4")

    @property
    def full_scale(self) -> float:
        return 32768.0 if self.sample_format == "int16" else 2147483648.0

    def describe(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch, {self.sample_format}"


def _check_device_args(what: str, rate: object, channels: object, sample_format: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise ValueError(f"{what} rate must be a whole number of Hz between 1000 and 384000, got {rate!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 32:
        raise ValueError(f"{what} channels must be a whole number from 1 to 32, got {channels!r}")
    if sample_format not in _FORMAT_CODES:
        raise ValueError(f'{what} format must be "int16" or "int32", got {sample_format!r}')


def _device_info(device: VirtualDevice) -> dict[str, Any]:
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


class _DeviceListing:
    """The part of PyAudio's API that lists devices, checks formats and opens streams, over some listing.

    The card itself lists what is plugged in right now; a `VirtualPortAudio` lists what was plugged in
    when it was made, as PortAudio does.
    """

    # The module's constants, also reachable through the instance (code given only `pa` can use them).
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

    def _card_of(self) -> VirtualCard:
        raise NotImplementedError

    def _still_there(self, device: VirtualDevice) -> bool:
        """Whether a listed device can be used (it is plugged in, and not replugged since it was listed)."""
        return True

    def _opened(self, stream: VirtualStream) -> None:
        """Remember a stream opened through this listing."""

    # -- PyAudio: enumeration

    def get_device_count(self) -> int:
        return len(self._listed())

    def get_device_info_by_index(self, device_index: int) -> dict[str, Any]:
        return _device_info(self._device(device_index))

    def get_device_info_by_host_api_device_index(
        self, host_api_index: int, host_api_device_index: int
    ) -> dict[str, Any]:
        self.get_host_api_info_by_index(host_api_index)
        return self.get_device_info_by_index(host_api_device_index)

    def get_default_input_device_info(self) -> dict[str, Any]:
        return _device_info(self._default("input"))

    def get_default_output_device_info(self) -> dict[str, Any]:
        return _device_info(self._default("output"))

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
            return _SAMPLE_SIZES[format]
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
        if sample_format != _FORMAT_CODES[device.sample_format]:
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
        stream_callback: Callable[[bytes | None, int, dict[str, float], int], tuple[Any, int]] | None = None,
    ) -> VirtualStream:
        """Open a callback stream on a mic or a speaker, in its one native format (else OSError, as PortAudio)."""
        if not input and not output:
            raise ValueError("Must specify an input or output stream.")
        if input and output:
            raise ValueError("the virtual card has no full-duplex device; open input and output separately")
        if stream_callback is None:
            raise ValueError("the virtual card supports callback streams only; pass stream_callback")
        card = self._card_of()
        if card._terminated or self._is_terminated():
            raise OSError(paNotInitialized, "PortAudio not initialized")
        direction: Direction = "input" if input else "output"
        index = input_device_index if input else output_device_index
        if index is None:
            index = self._default(direction).index
        device = self._check_format(index, direction, rate, channels, format, OSError)
        if isinstance(frames_per_buffer, bool) or not isinstance(frames_per_buffer, int) or frames_per_buffer < 0:
            raise ValueError(f"frames_per_buffer must be a whole number of frames, got {frames_per_buffer!r}")
        frames = frames_per_buffer or max(1, round(device.rate * DEFAULT_PERIOD_S))
        with card._lock:
            live = card._current(device)
            if live is None:
                raise OSError(paUnanticipatedHostError, "Unanticipated host error")
            if live.name in card._streams:
                raise OSError(paDeviceUnavailable, "Device unavailable")
            stream = VirtualStream(card, live, frames, stream_callback)
            card._streams[live.name] = stream
        self._opened(stream)
        if start:
            stream.start_stream()
        return stream

    def _is_terminated(self) -> bool:
        return False


class VirtualCard(_DeviceListing):
    """A PyAudio-like object with one virtual microphone and one virtual speaker (both the defaults).

    Used as `pa=` it lists what is plugged in right now: `unplug(name)` and `plug(name)` take a device away
    and bring it back (at a new index, as USB devices come back). `portaudio()` makes views that list
    devices the way a real PyAudio instance does, frozen when PortAudio was initialised.

    Thread-safe where PyAudio is: streams run their callbacks on their own threads; `queue_input`,
    `recorded`, `unplug`, `plug` and the counters may be used from any thread.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        mic_rate: int = 48000,
        mic_channels: int = 2,
        mic_format: SampleFormat = "int32",
        speaker_rate: int = 48000,
        speaker_channels: int = 2,
        speaker_format: SampleFormat = "int16",
        noise_dbfs: float | None = -60.0,
        seed: int = 0,
        record_limit_s: float = 120.0,
        max_queued_s: float = 300.0,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= 100:
            raise ValueError(f"speed must be a number above 0 and at most 100 (1.0 is real time), got {speed!r}")
        _check_device_args("mic", mic_rate, mic_channels, mic_format)
        _check_device_args("speaker", speaker_rate, speaker_channels, speaker_format)
        if noise_dbfs is not None and not (-140.0 <= noise_dbfs <= 0.0):
            raise ValueError(f"noise_dbfs must be between -140 and 0 dBFS (or None for none), got {noise_dbfs!r}")
        if not record_limit_s > 0 or not max_queued_s > 0:
            raise ValueError("record_limit_s and max_queued_s must be positive numbers of seconds")
        self.speed = float(speed)
        # The devices as last plugged in (index and serial change when one is unplugged or plugged back).
        self._known: dict[str, VirtualDevice] = {
            MIC_NAME: VirtualDevice(0, MIC_NAME, "input", mic_rate, mic_channels, mic_format),
            SPEAKER_NAME: VirtualDevice(1, SPEAKER_NAME, "output", speaker_rate, speaker_channels, speaker_format),
        }
        self._plugged: list[VirtualDevice] = list(self._known.values())  # position == index
        self._noise_rms = None if noise_dbfs is None else self.mic.full_scale * 10.0 ** (noise_dbfs / 20.0)
        self._rng = np.random.default_rng(seed)
        self._clock0 = time.monotonic()
        self._lock = threading.Lock()
        self._streams: dict[str, VirtualStream] = {}  # device name -> its one open stream
        self._terminated = False
        # PortAudio's initialisation count, shared by the views: the listing they share while any is alive.
        self._views_alive = 0
        self._view_listing: tuple[VirtualDevice, ...] = ()

        # Microphone input waiting to be delivered (native dtype, shape (n, channels)).
        self._queued: collections.deque[np.ndarray] = collections.deque()
        self._queued_pos = 0  # frames of _queued[0] already delivered
        self._queued_frames = 0
        self._max_queued_frames = int(max_queued_s * mic_rate)
        self._input_drained = threading.Event()
        self._input_drained.set()

        # Everything the speaker played (native dtype, shape (n, channels)); the oldest goes past the limit.
        self._played: collections.deque[np.ndarray] = collections.deque()
        self._played_frames = 0
        self._played_changed = threading.Condition(self._lock)
        self._record_limit_frames = max(1, int(record_limit_s * speaker_rate))

        self.input_frames_delivered = 0
        self.output_frames_played = 0
        #: Frames of played audio forgotten because the recording exceeded record_limit_s.
        self.output_frames_forgotten = 0

    @property
    def mic(self) -> VirtualDevice:
        """The microphone as last plugged in (its index is stale while it is unplugged)."""
        return self._known[MIC_NAME]

    @property
    def speaker(self) -> VirtualDevice:
        """The speaker as last plugged in (its index is stale while it is unplugged)."""
        return self._known[SPEAKER_NAME]

    def _listed(self) -> tuple[VirtualDevice, ...]:
        with self._lock:
            return tuple(self._plugged)

    def _card_of(self) -> VirtualCard:
        return self

    def _current(self, device: VirtualDevice) -> VirtualDevice | None:
        """Lock held: the plugged-in device `device` was listed as, if it is still in the same plugging."""
        return next((d for d in self._plugged if d.name == device.name and d.serial == device.serial), None)

    # ------------------------------------------------------------------ plugging

    def unplug(self, name: str) -> None:
        """Take a device away, as pulling its USB plug would.

        It leaves the listing (the devices after it move down one index); a stream open on it stops calling
        back and turns inactive, as PortAudio's does when ALSA reports the device gone. Closing that stream
        is up to its owner. ValueError if `name` is not plugged in.
        """
        with self._lock:
            device = self._plugged_named(name)
            self._plugged.remove(device)
            self._reindex()
            stream = self._streams.get(name)
        if stream is not None:
            stream._lose()

    def plug(self, name: str) -> None:
        """Bring an unplugged device back, at the end of the listing (a new index, as a USB device gets).

        ValueError if there is no such device or it is plugged in already.
        """
        with self._lock:
            if name not in self._known:
                raise ValueError(f"the virtual card has no device {name!r}; it has {', '.join(self._known)}")
            if any(d.name == name for d in self._plugged):
                raise ValueError(f"{name} is plugged in already")
            known = self._known[name]
            device = dataclasses.replace(known, index=len(self._plugged), serial=known.serial + 1)
            self._known[name] = device
            self._plugged.append(device)

    def is_plugged(self, name: str) -> bool:
        with self._lock:
            return any(d.name == name for d in self._plugged)

    def cards(self) -> frozenset[str]:
        """What /proc/asound/cards would say: one line per plugged device, new for every plugging."""
        with self._lock:
            return frozenset(f"{d.name}: plugged in #{d.serial}" for d in self._plugged)

    def portaudio(self) -> VirtualPortAudio:
        """A PyAudio-like view of the card that lists devices as a fresh `pyaudio.PyAudio()` would.

        See `VirtualPortAudio`; hand `card.portaudio` to a `PortAudioHost` as its factory.
        """
        return VirtualPortAudio(self)

    def _plugged_named(self, name: str) -> VirtualDevice:
        device = next((d for d in self._plugged if d.name == name), None)
        if device is None:
            plugged = ", ".join(d.name for d in self._plugged) or "nothing"
            raise ValueError(f"{name!r} is not plugged in; plugged in: {plugged}")
        return device

    def _reindex(self) -> None:
        """Lock held: give the plugged devices consecutive indices again."""
        for position, device in enumerate(self._plugged):
            if device.index != position:
                moved = dataclasses.replace(device, index=position)
                self._plugged[position] = moved
                self._known[device.name] = moved
                stream = self._streams.get(device.name)
                if stream is not None:
                    stream.device = moved

    # ------------------------------------------------------------------ streams

    def terminate(self) -> None:
        """Close every open stream (their threads stop); the recording stays readable. Idempotent."""
        self._terminated = True
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()

    def _release(self, stream: VirtualStream) -> None:
        with self._lock:
            if self._streams.get(stream.device.name) is stream:
                del self._streams[stream.device.name]

    def device_time(self) -> float:
        """Seconds on the card's clock (runs `speed` times faster than the wall clock)."""
        return (time.monotonic() - self._clock0) * self.speed

    # ------------------------------------------------------------------ the microphone's room

    def queue_input(self, samples: np.ndarray) -> float:
        """Queue audio for the mic to deliver after what is already queued; returns its length in seconds.

        `samples` is at the mic's rate: shape (n, channels), or 1-D for the same signal on every channel.
        Integer samples are taken as the mic's native values (they must fit its sample format); float
        samples are full scale at +-1.0 (clipped). Audio queued while no input stream runs waits for one.
        ValueError when more than `max_queued_s` would be waiting (nothing is queued then).
        """
        mic = self.mic
        arr = np.asarray(samples)
        if arr.ndim == 1:
            arr = np.repeat(arr[:, np.newaxis], mic.channels, axis=1)
        if arr.ndim != 2 or arr.shape[1] != mic.channels:
            raise ValueError(
                f"the virtual mic has {mic.channels} channel(s); queue an array of shape (n, {mic.channels}) "
                f"or a 1-D array for all channels, not shape {arr.shape}"
            )
        native = self._to_native(arr)
        if native.shape[0] == 0:
            return 0.0
        with self._lock:
            if self._queued_frames + native.shape[0] > self._max_queued_frames:
                raise ValueError(
                    f"the virtual mic can hold at most {self._max_queued_frames / mic.rate:.0f} s of queued audio; "
                    "wait for wait_input_drained() before queueing more"
                )
            self._queued.append(native)
            self._queued_frames += native.shape[0]
            self._input_drained.clear()
        return native.shape[0] / mic.rate

    def queue_pcm16(self, pcm16: bytes, rate: int) -> float:
        """Queue a mono 16-bit recording at any rate (e.g. generated speech), as the mic would pick it up."""
        if len(pcm16) % 2:
            raise ValueError(f"PCM16 audio must be an even number of bytes, got {len(pcm16)}")
        voice = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        return self.queue_input(resample(voice, int(rate), self.mic.rate))

    def _to_native(self, arr: np.ndarray) -> np.ndarray:
        mic = self.mic
        dtype = mic.dtype
        if arr.dtype.kind == "f":
            scaled = np.rint(np.clip(arr.astype(np.float64), -1.0, 1.0) * mic.full_scale)
            info = np.iinfo(dtype)
            return np.clip(scaled, info.min, info.max).astype(dtype)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"queue integer samples or floats in [-1, 1], not {arr.dtype}")
        info = np.iinfo(dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise ValueError(
                f"samples exceed the virtual mic's {mic.sample_format} range; "
                f"queue {mic.sample_format} values or floats in [-1, 1]"
            )
        return np.ascontiguousarray(arr, dtype=dtype)

    def wait_input_drained(self, timeout: float | None = None) -> bool:
        """Block until all queued input has been delivered to an input callback; False on timeout."""
        return self._input_drained.wait(timeout)

    @property
    def queued_input_seconds(self) -> float:
        return self._queued_frames / self.mic.rate

    def _capture_block(self, frames: int) -> np.ndarray:
        """The next `frames` frames the mic hears: queued audio (or nothing) plus room noise, native dtype."""
        mic = self.mic
        block = np.zeros((frames, mic.channels), dtype=np.int64)
        filled = 0
        with self._lock:
            while filled < frames and self._queued:
                head = self._queued[0]
                take = min(frames - filled, head.shape[0] - self._queued_pos)
                block[filled : filled + take] = head[self._queued_pos : self._queued_pos + take]
                filled += take
                self._queued_pos += take
                if self._queued_pos == head.shape[0]:
                    self._queued.popleft()
                    self._queued_pos = 0
            self._queued_frames -= filled
        if self._noise_rms is not None:
            noise = self._rng.standard_normal((frames, mic.channels)) * self._noise_rms
            block += np.rint(noise).astype(np.int64)
        info = np.iinfo(mic.dtype)
        return np.clip(block, info.min, info.max).astype(mic.dtype)

    def _input_delivered(self, frames: int) -> None:
        self.input_frames_delivered += frames
        with self._lock:
            if self._queued_frames == 0:
                self._input_drained.set()

    # ------------------------------------------------------------------ the speaker's recording

    def _record(self, block: np.ndarray) -> None:
        with self._lock:
            self._played.append(block)
            self._played_frames += block.shape[0]
            while self._played_frames - self._played[0].shape[0] >= self._record_limit_frames:
                old = self._played.popleft()
                self._played_frames -= old.shape[0]
                self.output_frames_forgotten += old.shape[0]
            self.output_frames_played += block.shape[0]
            self._played_changed.notify_all()

    def wait_output_frames(self, total: int, timeout: float | None = None) -> bool:
        """Block until the speaker has played `total` frames since the card was made; False on timeout.

        E.g. after `on_drained`, wait for `output_frames_played + one period` so the reply's last block
        is recorded and a stretch of idle output follows it.
        """
        with self._played_changed:
            return self._played_changed.wait_for(lambda: self.output_frames_played >= total, timeout)

    def recorded(self) -> np.ndarray:
        """What the speaker played so far (up to record_limit_s), shape (n, channels), its native dtype."""
        with self._lock:
            blocks = list(self._played)
        if not blocks:
            return np.zeros((0, self.speaker.channels), dtype=self.speaker.dtype)
        return np.concatenate(blocks)

    def recorded_mono16(self) -> np.ndarray:
        """The recording mixed to mono int16 (the average of the channels), at the speaker's rate."""
        played = self.recorded().astype(np.float64)
        mono = played.mean(axis=1) * (32768.0 / self.speaker.full_scale)
        return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)

    def write_output_wav(self, path: str | os.PathLike[str], trim_silence: bool = True) -> float:
        """Save what the speaker played as a mono 16-bit WAV at its rate; returns the seconds written.

        With `trim_silence`, the idle stretches before the first and after the last sound are cut,
        keeping `TRIM_MARGIN_S` of each; a recording with no sound at all gives an empty WAV.
        """
        mono = self.recorded_mono16()
        if trim_silence:
            loud = np.flatnonzero(np.abs(mono.astype(np.int32)) > SILENCE_PEAK)
            if loud.size == 0:
                mono = mono[:0]
            else:
                margin = round(TRIM_MARGIN_S * self.speaker.rate)
                mono = mono[max(0, int(loud[0]) - margin) : int(loud[-1]) + 1 + margin]
        write_wav(path, mono.astype("<i2").tobytes(), self.speaker.rate)
        return mono.size / self.speaker.rate


class VirtualPortAudio(_DeviceListing):
    """The card as one `pyaudio.PyAudio()` instance sees it: the devices plugged in when PortAudio started.

    PortAudio lists devices in Pa_Initialize and counts initialisations: while any instance is alive, a new
    one gets the same list. The views of one card share that count. A listed device that was unplugged
    refuses to open ("Unanticipated host error", as PortAudio's ALSA host API says), even once plugged back,
    because it came back at a new address; only a view made after every other one was terminated lists it.
    """

    def __init__(self, card: VirtualCard) -> None:
        self._card = card
        with card._lock:
            if card._views_alive == 0:
                card._view_listing = tuple(card._plugged)
            card._views_alive += 1
            self._listing = card._view_listing
        self._streams: list[VirtualStream] = []
        self._terminated = False

    def _listed(self) -> tuple[VirtualDevice, ...]:
        return self._listing

    def _card_of(self) -> VirtualCard:
        return self._card

    def _still_there(self, device: VirtualDevice) -> bool:
        with self._card._lock:
            return self._card._current(device) is not None

    def _opened(self, stream: VirtualStream) -> None:
        self._streams.append(stream)

    def _is_terminated(self) -> bool:
        return self._terminated

    def terminate(self) -> None:
        """Close the streams opened through this view and end its initialisation, as PyAudio does. Idempotent."""
        if self._terminated:
            return
        self._terminated = True
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
        with self._card._lock:
            self._card._views_alive -= 1


class VirtualStream:
    """One open stream of a VirtualCard; the PyAudio Stream methods the audio path needs."""

    def __init__(
        self,
        card: VirtualCard,
        device: VirtualDevice,
        frames_per_buffer: int,
        callback: Callable[[bytes | None, int, dict[str, float], int], tuple[Any, int]],
    ) -> None:
        self._card = card
        self.device = device
        self.frames_per_buffer = frames_per_buffer
        self._callback = callback
        self._is_input = device.direction == "input"
        self._bytes_per_block = frames_per_buffer * device.channels * device.dtype.itemsize
        self._period_s = frames_per_buffer / device.rate  # on the card's clock
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = False  # started and not stopped (PyAudio's _is_running)
        self._active = False  # the thread is calling back (False once the callback completes or aborts)
        self._closed = False
        self._lost = False  # its device was unplugged: it never calls back again
        #: The exception a callback raised (the stream aborted then, as PyAudio's does).
        self.callback_error: BaseException | None = None

    # -- PyAudio's Stream API

    def start_stream(self) -> None:
        self._check_open()
        if self._lost:
            raise OSError(paUnanticipatedHostError, "Unanticipated host error")
        if self._running:
            return
        self._stop = threading.Event()
        self._running = True
        self._active = True
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"{self.device.name}-clock", daemon=True
        )
        self._thread.start()

    def stop_stream(self) -> None:
        """Stop calling back; returns after the callback in progress (if any) has finished."""
        self._check_open()
        if not self._running:
            return
        self._halt()

    def is_active(self) -> bool:
        self._check_open()
        return self._active

    def is_stopped(self) -> bool:
        self._check_open()
        return not self._running

    def close(self) -> None:
        """Stop and release the device. Idempotent."""
        if self._closed:
            return
        self._halt()
        self._closed = True
        self._card._release(self)

    def get_input_latency(self) -> float:
        self._check_open()
        return self._period_s if self._is_input else 0.0

    def get_output_latency(self) -> float:
        self._check_open()
        return 0.0 if self._is_input else self._period_s

    def get_time(self) -> float:
        self._check_open()
        return self._card.device_time()

    def get_cpu_load(self) -> float:
        self._check_open()
        return 0.0

    def read(self, num_frames: int, exception_on_overflow: bool = True) -> bytes:
        raise OSError(paCanNotReadFromACallbackStream, "Can not read from a callback stream")

    def write(self, frames: bytes, num_frames: int | None = None, exception_on_underflow: bool = False) -> None:
        raise OSError(paCanNotWriteToACallbackStream, "Can not write to a callback stream")

    # -- internals

    def _lose(self) -> None:
        """The device was unplugged: stop calling back and turn inactive, but stay "running" and open.

        That is what PortAudio's stream does when ALSA reports the device gone; only closing it is left.
        """
        self._lost = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
        self._active = False

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(paBadStreamPtr, "Stream closed")

    def _halt(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning(
                    "the %s stream callback did not return within %.0f s", self.device.name, JOIN_TIMEOUT_S
                )
        self._thread = None
        self._running = False
        self._active = False

    def _run(self, stop: threading.Event) -> None:
        """Call back once per period on the card's clock until stopped, completed or aborted."""
        period = self._period_s / self._card.speed
        lead = 1 if self._is_input else 0  # an input block is ready once it has been heard
        gap_flag = paInputOverflow if self._is_input else paOutputUnderflow
        started = time.monotonic()
        done = 0
        status = 0
        try:
            while not stop.is_set():
                due = started + (done + lead) * period
                now = time.monotonic()
                if now < due:
                    if stop.wait(due - now):
                        break
                elif now - due > MAX_LAG_PERIODS * period:
                    started = now - (done + lead) * period
                    status = gap_flag
                if not self._cycle(status):
                    break
                status = 0
                done += 1
        finally:
            self._active = False

    def _cycle(self, status: int) -> bool:
        """One callback; False when the stream ends (paComplete, paAbort, an exception or a malformed reply)."""
        card = self._card
        frames = self.frames_per_buffer
        now = card.device_time()
        if self._is_input:
            in_data: bytes | None = card._capture_block(frames).tobytes()
            time_info = {"input_buffer_adc_time": now - self._period_s, "current_time": now}
        else:
            in_data = None
            time_info = {"current_time": now, "output_buffer_dac_time": now + self._period_s}
        try:
            out_data, flag = self._callback(in_data, frames, time_info, status)
            data = b"" if self._is_input or out_data is None else memoryview(out_data).cast("B").tobytes()
        except Exception as exc:  # noqa: BLE001 - PyAudio aborts the stream on a raising callback; so do we
            self.callback_error = exc
            log.error("the %s stream callback failed; the stream stopped", self.device.name, exc_info=True)
            return False
        if self._is_input:
            card._input_delivered(frames)
            return flag == paContinue
        if flag == paAbort:
            return False
        if len(data) < self._bytes_per_block:
            # PyAudio pads a short block with silence and treats it as the last one.
            data += bytes(self._bytes_per_block - len(data))
            flag = paComplete
        block = np.frombuffer(data, dtype=self.device.dtype, count=self._bytes_per_block // self.device.dtype.itemsize)
        card._record(block.reshape(-1, self.device.channels).copy())
        return flag == paContinue
