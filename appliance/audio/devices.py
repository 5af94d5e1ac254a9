"""Finding and opening sound devices by name, and choosing a format they accept.

PortAudio indices move with USB hotplug and card order, so devices are chosen by
name; formats are probed with `is_format_supported` because I2S HATs often accept
only one combination (S32_LE, 48 kHz, stereo).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from appliance.audio.frames import RATE
from appliance.textsafe import escape_controls_keeping_newlines


class AudioDeviceError(Exception):
    """A sound-device problem the owner has to fix (wrong name, unsupported format, busy)."""


_ALSA_ERROR_HANDLER_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)


def _ignore_alsa_error(_file: bytes, _line: int, _func: bytes, _err: int, _fmt: bytes) -> None:
    return None


# Module-level reference: alsa-lib keeps only the raw pointer, so the ctypes
# object must outlive every PyAudio instance or the next error would crash.
_alsa_error_handler: Any = None


def silence_alsa_errors() -> bool:
    """Install a no-op alsa-lib error handler once; False when libasound is not available."""
    global _alsa_error_handler
    if _alsa_error_handler is not None:
        return True
    try:
        libasound = ctypes.cdll.LoadLibrary("libasound.so.2")
    except OSError:
        name = ctypes.util.find_library("asound")
        if name is None:
            return False  # no alsa-lib (not Linux, or a minimal container): nothing to silence
        try:
            libasound = ctypes.cdll.LoadLibrary(name)
        except OSError:
            return False
    try:
        handler = _ALSA_ERROR_HANDLER_TYPE(_ignore_alsa_error)
        libasound.snd_lib_error_set_handler(handler)
    except AttributeError:
        return False
    _alsa_error_handler = handler
    return True


def open_pyaudio() -> Any:
    """A new `pyaudio.PyAudio()` without alsa-lib's and JACK's stderr noise.

    PortAudio rescans devices only when no other PyAudio instance is alive (it counts initialisations).
    """
    silence_alsa_errors()
    import pyaudio

    with quiet_stderr():
        return pyaudio.PyAudio()


# What PortAudio and the libraries under it print straight to fd 2: Debian builds PortAudio with JACK, which
# prints "Cannot connect to server" lines at every initialisation on a box without a JACK server, and with
# debug output, which prints "Expression '...' failed in ..." for every device that refuses to open. In the
# journal they look like failures; a real failure raises with our own one-line error instead.
_NOISE = re.compile(rb"^\s*(ALSA lib |Expression '|Cannot connect to server|jack|Cannot lock down)", re.IGNORECASE)
_stderr_lock = threading.RLock()
_stderr_held = threading.local()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold back what is printed to fd 2 meanwhile, then pass on every line that is not PortAudio noise.

    fd 2 belongs to the whole process: log lines other threads write meanwhile land in the same holding
    file and are written out afterwards, in order, instead of being lost. One redirection at a time (two
    overlapping ones would restore the wrong descriptor); a nested use on the same thread is a no-op.
    """
    with _stderr_lock:
        if getattr(_stderr_held, "active", False):
            yield
            return
        with contextlib.ExitStack() as cleanup:
            try:
                held = cleanup.enter_context(tempfile.TemporaryFile())
                saved = os.dup(2)
            except OSError:
                held = None
            if held is None:
                yield
                return
            _flush_python_stderr()
            os.dup2(held.fileno(), 2)
            _stderr_held.active = True
            try:
                yield
            finally:
                _stderr_held.active = False
                _flush_python_stderr()
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                lines = held.read().splitlines(keepends=True)
                kept = [line for line in lines if line.strip() and not _NOISE.match(line)]
                _write_all(2, b"".join(kept))


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):  # a closed or replaced sys.stderr: nothing buffered to lose
        sys.stderr.flush()


def sound_cards() -> frozenset[str]:
    """The kernel's sound cards, one line each, as /proc/asound/cards lists them (empty where there is none).

    Cheap enough to read every few seconds, and it changes when a USB card comes or goes, which is when a
    PortAudio rescan (which pauses every open stream) is worth its cost.
    """
    try:
        text = Path("/proc/asound/cards").read_text(errors="replace")
    except OSError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and "no soundcards" not in line)


# ----------------------------------------------------------------------------------------------------------
# Enumeration and lookup by name
# ----------------------------------------------------------------------------------------------------------

Direction = Literal["input", "output"]
SampleFormat = Literal["int16", "int32"]

COMMON_RATES: tuple[int, ...] = (16000, 24000, 44100, 48000)
_HINT = 'run "appliance devices" to see them'


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device, as `appliance devices` shows it."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    host_api: str

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels


def list_devices(pa: Any) -> list[DeviceInfo]:
    """Every device PortAudio knows, in index order."""
    host_names: dict[int, str] = {}
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        api = int(info.get("hostApi", 0))
        if api not in host_names:
            try:
                host_names[api] = str(pa.get_host_api_info_by_index(api)["name"])
            except (OSError, ValueError, KeyError):
                host_names[api] = f"host API {api}"
        devices.append(
            DeviceInfo(
                index=index,
                name=str(info["name"]),
                max_input_channels=int(info["maxInputChannels"]),
                max_output_channels=int(info["maxOutputChannels"]),
                default_rate=int(round(float(info["defaultSampleRate"]))),
                host_api=host_names[api],
            )
        )
    return devices


def _default_index(pa: Any, direction: Direction) -> int | None:
    getter = pa.get_default_input_device_info if direction == "input" else pa.get_default_output_device_info
    try:
        return int(getter()["index"])
    except (OSError, ValueError, KeyError):  # PyAudio raises OSError when there is no default device
        return None


def _quoted_names(devices: list[DeviceInfo]) -> str:
    return ", ".join(f'"{d.name}"' for d in devices) if devices else "none"


def find_device(pa: Any, spec: str, *, direction: Direction) -> DeviceInfo:
    """Resolve a configured device spec to one device that has channels in `direction`.

    Order: "default"; an exact name (case-insensitive); a substring matching exactly
    one device; "#N" for a PortAudio index (last resort: indices move with USB hotplug).
    """
    devices = list_devices(pa)
    usable = [d for d in devices if d.channels(direction) > 0]
    wanted = spec.strip()
    lowered = wanted.lower()
    kind = f"{direction} device"

    if lowered == "default":
        index = _default_index(pa, direction)
        chosen = next((d for d in usable if d.index == index), None)
        if chosen is None:
            chosen = next((d for d in usable if d.name.lower() == "default"), None)
        if chosen is None:
            raise AudioDeviceError(
                f'there is no default {kind}; {direction}s: {_quoted_names(usable)}; '
                f'set audio.{direction}_device to one of them ({_HINT})'
            )
        return chosen

    exact = [d for d in devices if d.name.lower() == lowered]
    exact_usable = [d for d in exact if d.channels(direction) > 0]
    if len(exact_usable) == 1:
        return exact_usable[0]
    if exact and not exact_usable:
        raise AudioDeviceError(
            f'"{exact[0].name}" has no {direction} channels; {direction}s: {_quoted_names(usable)} ({_HINT})'
        )

    partial = [d for d in usable if lowered in d.name.lower()] if lowered else []
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1 or len(exact_usable) > 1:
        matches = exact_usable or partial
        raise AudioDeviceError(
            f'"{wanted}" matches {len(matches)} {direction} devices: {_quoted_names(matches)}; '
            f'use more of the name, or #N for an index ({_HINT})'
        )

    index_match = re.fullmatch(r"#\s*(\d+)", wanted)
    if index_match:
        index = int(index_match.group(1))
        chosen = next((d for d in devices if d.index == index), None)
        if chosen is None:
            raise AudioDeviceError(
                f"there is no device #{index} (indices change when USB devices come and go); "
                f"{direction}s: {_quoted_names(usable)}; prefer a name ({_HINT})"
            )
        if chosen.channels(direction) == 0:
            raise AudioDeviceError(
                f'device #{index} ("{chosen.name}") has no {direction} channels; '
                f"{direction}s: {_quoted_names(usable)} ({_HINT})"
            )
        return chosen

    raise AudioDeviceError(
        f'no {kind} matches "{wanted}"; {direction}s: {_quoted_names(usable)}; '
        f"set audio.{direction}_device to one of them or part of a name ({_HINT})"
    )


# ----------------------------------------------------------------------------------------------------------
# Choosing a capture format the device really accepts
# ----------------------------------------------------------------------------------------------------------

FALLBACK_RATES: tuple[int, ...] = (48000, 44100, 16000)
#: ALSA devices that are a sound server (PulseAudio, PipeWire): it resamples and downmixes in its own
#: process with a good resampler whatever we ask for, so asking for 16 kHz mono saves doing it twice
SOUND_SERVER_DEVICES: tuple[str, ...] = ("pulse", "pipewire")
_FORMAT_BYTES: dict[str, int] = {"int16": 2, "int32": 4}


# PortAudio's constants (portaudio.h): fixed by its ABI and equal to pyaudio's. Kept here so that format selection
# and the stream callbacks need no pyaudio module (`appliance demo` runs on the virtual card without PortAudio).
PA_INT16 = 0x08
PA_INT32 = 0x02
PA_CONTINUE = 0
PA_INPUT_OVERFLOW = 0x02
PA_OUTPUT_UNDERFLOW = 0x04


def pa_sample_format(sample_format: SampleFormat) -> int:
    """The PortAudio constant for one of our sample format names."""
    return {"int16": PA_INT16, "int32": PA_INT32}[sample_format]


@dataclass(frozen=True)
class InputFormat:
    """How the microphone stream is opened; the capture path converts it to 16 kHz mono s16le."""

    device: DeviceInfo
    rate: int
    channels: int
    sample_format: SampleFormat
    frames_per_buffer: int

    @property
    def bytes_per_sample(self) -> int:
        return _FORMAT_BYTES[self.sample_format]

    def describe(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch, {self.sample_format}"


def _supported(pa: Any, device: DeviceInfo, direction: Direction, rate: int, channels: int, fmt: SampleFormat) -> bool:
    if direction == "input":
        kwargs = {"input_device": device.index, "input_channels": channels, "input_format": pa_sample_format(fmt)}
    else:
        kwargs = {"output_device": device.index, "output_channels": channels, "output_format": pa_sample_format(fmt)}
    try:
        return bool(pa.is_format_supported(rate, **kwargs))
    except (ValueError, OSError):  # PyAudio's way of saying "no"
        return False


def _unique(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


def choose_input_format(pa: Any, device: DeviceInfo, audio_cfg: Any) -> InputFormat:
    """Pick rate, channels and sample format for capture; explicit config values are used as given.

    Tried in order: rates (device default, 48000, 44100, 16000), then channel counts
    (up to 2, 2, 1, all), then formats (int16, int32). Rate varies slowest because
    resampling is cheap, while an I2S HAT that only does S32_LE 48 kHz stereo must
    still be found by walking channels and formats at its one rate.  A sound server
    (SOUND_SERVER_DEVICES) mixing all channels is asked for 16 kHz mono first: it
    converts anyway, so the capture path then only slices frames.
    """
    channel = int(audio_cfg.input_channel)
    needed = channel + 1 if channel >= 0 else 1
    max_channels = device.max_input_channels
    if needed > max_channels:
        raise AudioDeviceError(
            f'audio.input_channel is {channel} but "{device.name}" has only {max_channels} input channel(s) '
            f"(channels count from 0; -1 mixes all)"
        )

    server_mix = channel < 0 and device.name.strip().lower() in SOUND_SERVER_DEVICES
    if audio_cfg.input_rate:
        rates = [int(audio_cfg.input_rate)]
    elif server_mix:
        rates = _unique([RATE, device.default_rate, *FALLBACK_RATES])
    else:
        rates = _unique([device.default_rate, *FALLBACK_RATES])
    if audio_cfg.input_channels:
        if needed > audio_cfg.input_channels:
            raise AudioDeviceError(
                f"audio.input_channel is {channel} but audio.input_channels is {audio_cfg.input_channels}; "
                f"open at least {needed} channels or pick a lower channel"
            )
        channel_counts = [int(audio_cfg.input_channels)]
    else:
        preferred = 1 if server_mix else max(min(2, max_channels), needed)
        channel_counts = [c for c in _unique([preferred, 2, 1, max_channels]) if needed <= c <= max_channels]
    formats: list[SampleFormat] = (
        ["int16", "int32"] if audio_cfg.input_format == "auto" else [audio_cfg.input_format]
    )

    for rate in rates:
        for channels in channel_counts:
            for fmt in formats:
                if _supported(pa, device, "input", rate, channels, fmt):
                    return InputFormat(device, rate, channels, fmt, frames_per_buffer=rate * 20 // 1000)

    tried = (
        f"{'/'.join(str(r) for r in rates)} Hz x {'/'.join(str(c) for c in channel_counts)} ch x "
        f"{'/'.join(formats)}"
    )
    raise AudioDeviceError(
        f'microphone "{device.name}" accepts none of the formats tried ({tried}); set audio.input_rate, '
        f"audio.input_channels and audio.input_format to what it supports "
        f"(see \"arecord -D <device> --dump-hw-params\"), or choose another device"
    )


def probe_rates(pa: Any, device: DeviceInfo, direction: Direction) -> dict[int, bool]:
    """Which common rates the device opens at, in any channel count up to 2 (or all) and int16/int32."""
    max_channels = device.channels(direction)
    counts = [c for c in _unique([min(2, max_channels), 1, max_channels]) if c > 0]
    return {
        rate: any(
            _supported(pa, device, direction, rate, channels, fmt) for channels in counts for fmt in ("int16", "int32")
        )
        for rate in COMMON_RATES
    }


# ----------------------------------------------------------------------------------------------------------
# `appliance devices`
# ----------------------------------------------------------------------------------------------------------


def _device_lines(pa: Any, devices: list[DeviceInfo], direction: Direction, selected: DeviceInfo | None) -> list[str]:
    lines = []
    width = max((len(d.name) for d in devices), default=0)
    for device in devices:
        rates = probe_rates(pa, device, direction)
        opens = [str(r) for r, ok in rates.items() if ok]
        refuses = [str(r) for r, ok in rates.items() if not ok]
        rate_text = f"opens at {', '.join(opens)}" if opens else "opens at none of the common rates (busy?)"
        if opens and refuses:
            rate_text += f" (not {', '.join(refuses)})"
        marker = "*" if selected is not None and device.index == selected.index else " "
        lines.append(
            f" {marker} #{device.index:<3} {device.name:<{width}}  {device.channels(direction):>3} ch  "
            f"default {device.default_rate} Hz  {rate_text}"
        )
    return lines


@dataclass(frozen=True)
class DevicesListing:
    """What `appliance devices` prints, and the settings that select no device (its exit status)."""

    text: str
    unmatched: tuple[str, ...] = ()  # e.g. "audio.input_device"


def _verdict(spec: str, usable: list[DeviceInfo]) -> str:
    """How a spec that selects no device is described: a name part of several is not "nothing"."""
    wanted = spec.strip().lower()
    return "selects no device" if wanted and any(wanted in d.name.lower() for d in usable) else "matches nothing"


def devices_listing(pa: Any, audio_cfg: Any) -> DevicesListing:
    """Every input and output, the configured ones marked, and the settings that select none."""
    devices = list_devices(pa)
    sections = []
    unmatched: list[str] = []
    for direction, title in (("input", "Inputs (microphones)"), ("output", "Outputs (speakers)")):
        key = f"audio.{direction}_device"
        spec = getattr(audio_cfg, f"{direction}_device")
        usable = [d for d in devices if d.channels(direction) > 0]
        problem = ""
        selected: DeviceInfo | None = None
        try:
            selected = find_device(pa, spec, direction=direction)
        except AudioDeviceError as exc:
            problem = str(exc).removesuffix(f" ({_HINT})")  # the hint says to run this very listing
        lines = [f"{title}:"]
        lines += _device_lines(pa, usable, direction, selected) if usable else ["   (none found)"]
        if selected is not None:
            lines.append(f'   * = {key} "{spec}" selects #{selected.index} "{selected.name}"')
            if direction == "input":
                try:
                    fmt = choose_input_format(pa, selected, audio_cfg)
                    lines.append(f"     capture opens at {fmt.describe()}")
                except AudioDeviceError as exc:
                    lines.append(f"     cannot capture: {exc}")
        else:
            unmatched.append(key)
            lines.append(f'   {key} "{spec}" {_verdict(spec, usable)}: {problem}')
        sections.append("\n".join(lines))
    return DevicesListing("\n\n".join(sections) + "\n", tuple(unmatched))


def devices_report(pa: Any, audio_cfg: Any) -> str:
    """The text of `appliance devices` alone."""
    return devices_listing(pa, audio_cfg).text


def devices_command(audio_cfg: Any, printer: Callable[[str], None] = print) -> int:
    """`appliance devices`: exit 0 when both settings select a device, 1 when one selects none, 2 without PyAudio."""
    try:
        pa = open_pyaudio()
    except ImportError:
        print("appliance devices: PyAudio is not installed; run scripts/bootstrap.sh", file=sys.stderr)
        return 2
    try:
        listing = devices_listing(pa, audio_cfg)
    finally:
        pa.terminate()
    printer(escape_controls_keeping_newlines(listing.text))  # names come from the config file and the drivers
    return 1 if listing.unmatched else 0
