"""`appliance audio-test`: does the microphone work, and does it hear the speaker?

It listens to the room (noise floor), plays a sweep through the speaker while
listening, and reports the levels.  Every verdict comes with what to do about it,
because the person reading it is usually standing next to a freshly wired box.
Time is counted in captured frames, so a slow machine gives the same answer.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from appliance.console import print_now
from appliance.settings.paths import state_dir
from appliance.settings.schema import Config
from appliance.audio.frames import FRAME_MS, RATE
from appliance.audio.resample import resample
from appliance.textsafe import escape_controls

SWEEP_RATE = 24000
SWEEP_SECONDS = 1.5
QUIET_SECONDS = 1.0
#: the mic "hears the speaker" when the sweep lifts the level this much above the room
HEARD_DB = 10.0
CLIP_FRACTION = 0.001
FIRST_AUDIO_TIMEOUT_S = 5.0


#: the advice when every sample the microphone gave was 0
SILENT_MIC_ADVICE = (
    "the microphone heard nothing (every sample was 0): is it muted (alsamixer: F6 picks the card, F4 shows "
    "capture, space toggles the capture switch) or the wrong device or channel (audio.input_device, "
    "audio.input_channel; `appliance devices` lists the devices)?"
)


def _is_number(value: float | None) -> bool:
    """A level that was measured: not missing and not NaN (-inf is a measurement: digital silence)."""
    return value is not None and not math.isnan(value)


def _level(value: float) -> str:
    return "digital silence" if value == -math.inf else f"{value:.1f} dBFS"


@dataclass
class SelfTestReport:
    """What audio-test measured.  A level is None until measured, and -inf when it was digital silence."""

    input_device: str = ""
    output_device: str = ""
    #: the appliance's own volume (0-100) the sweep played at
    volume: int | None = None
    noise_floor_dbfs: float | None = None
    input_peak_dbfs: float | None = None
    sweep_level_dbfs: float | None = None
    clipped_fraction: float | None = None
    speaker_heard: bool = False
    echo_delay_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [
            f"microphone: {self.input_device or 'not opened'}",
            f"speaker:    {self.output_device or 'not opened'}",
            self._levels_line(),
            f"the microphone hears the speaker: {self._heard_text()}",
        ]
        out.extend(f"PROBLEM: {p}" for p in self.problems)
        out.append("audio test passed" if self.ok else "audio test failed")
        return out

    def _heard_nothing(self) -> bool:
        return self.input_peak_dbfs == -math.inf

    def _missing(self, value: float | None) -> str:
        """Why a level has no number, in the order the test gets that far."""
        if not self.input_device:
            return "the microphone did not open"
        if not self.output_device:
            return "the speaker did not open"
        if value is None:
            return "no audio came from the microphone"
        return "the measurement gave no number"

    def _levels_line(self) -> str:
        floor, peak = self.noise_floor_dbfs, self.input_peak_dbfs
        if self._heard_nothing():
            return "levels: the microphone heard nothing (every sample was 0)"
        if not _is_number(floor) and not _is_number(peak):
            return f"levels: not measured ({self._missing(peak)})"
        parts = [
            f"noise floor {_level(floor)}" if _is_number(floor) else f"noise floor not measured ({self._missing(floor)})",
            f"input peak {_level(peak)}" if _is_number(peak) else f"input peak not measured ({self._missing(peak)})",
        ]
        if _is_number(self.clipped_fraction):
            parts.append(f"clipped {self.clipped_fraction * 100:.2f} % of samples")
        return ", ".join(parts)

    def _heard_text(self) -> str:
        sweep, floor = self.sweep_level_dbfs, self.noise_floor_dbfs
        if not _is_number(sweep):
            why = "the microphone heard nothing" if self._heard_nothing() else self._missing(sweep)
            return f"not tested ({why})"
        if sweep == -math.inf:
            return "no: the microphone heard nothing while the sweep played"
        if _is_number(floor) and floor > -math.inf:
            margin = f"{sweep - floor:.1f} dB above the room"
        elif _is_number(floor):
            margin = f"at {sweep:.1f} dBFS over a digitally silent room"
        else:
            margin = f"at {sweep:.1f} dBFS (the room was not measured)"
        if not self.speaker_heard:
            return f"no: the sweep came in {margin}; it needs to be {HEARD_DB:g} dB above the room"
        if self.echo_delay_ms is not None and not math.isnan(self.echo_delay_ms):
            margin += f", {self.echo_delay_ms:.0f} ms from speaker to microphone"
        return f"yes, {margin}"


def sweep(seconds: float = SWEEP_SECONDS, rate: int = SWEEP_RATE) -> np.ndarray:
    """A logarithmic sweep 300 Hz to 3.4 kHz (the band every small speaker and mic share) at -12 dBFS."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0, f1 = 300.0, 3400.0
    k = math.log(f1 / f0)
    phase = 2 * math.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1)
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    return (0.25 * np.sin(phase) * fade).astype(np.float32)


def _dbfs(x: np.ndarray) -> float:
    """RMS level; -inf for digital silence, NaN for no samples at all (nothing was measured)."""
    if not len(x):
        return math.nan
    rms = float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if len(x) else math.nan
    return 20 * math.log10(peak) if peak > 0 else (-math.inf if peak == 0 else math.nan)


class _FrameTap:
    """Collects captured frames and wakes waiters when enough have come."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self._want = 0
        self._event = asyncio.Event()

    def on_frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        if len(self.frames) >= self._want:
            self._event.set()

    async def collect(self, seconds: float, timeout: float) -> np.ndarray:
        start = len(self.frames)
        self._want = start + int(seconds * 1000 / FRAME_MS)
        self._event.clear()
        if len(self.frames) < self._want:
            await asyncio.wait_for(self._event.wait(), timeout)
        chunk = b"".join(self.frames[start : self._want])
        return np.frombuffer(chunk, "<i2").astype(np.float32) / 32768.0


def _named(fmt: Any) -> str:
    return f'"{fmt.device.name}", {fmt.describe()}'


async def run_self_test(cfg: Config, *, pa: Any = None) -> SelfTestReport:
    from appliance.audio.capture import Capture
    from appliance.audio.devices import AudioDeviceError, open_pyaudio
    from appliance.audio.speaker import Player

    loop = asyncio.get_running_loop()
    report = SelfTestReport()
    own_pa = pa is None
    pa = pa if pa is not None else open_pyaudio()
    tap = _FrameTap()
    capture = Capture(cfg.audio, tap.on_frame, loop, pa=pa)
    player = Player(cfg.audio, loop, state_dir=state_dir(cfg), pa=pa)
    try:
        try:
            report.input_device = _named(capture.start())
            speaker = _named(player.start())
        except AudioDeviceError as exc:
            report.problems.append(str(exc))
            return report
        report.volume = player.volume
        report.output_device = f"{speaker}, volume {report.volume}"
        try:
            await tap.collect(0.3, FIRST_AUDIO_TIMEOUT_S)  # let the device settle
            quiet = await tap.collect(QUIET_SECONDS, QUIET_SECONDS + FIRST_AUDIO_TIMEOUT_S)
        except TimeoutError:
            report.problems.append(
                "the microphone delivers no audio; check it is plugged in and that audio.input_device is right "
                "(`appliance devices` lists the devices)"
            )
            return report
        report.noise_floor_dbfs = _dbfs(quiet)

        test_signal = sweep()
        pcm = (np.clip(test_signal, -1, 1) * 32767).astype("<i2").tobytes()
        player.new_reply()
        player.feed(pcm)
        player.end_of_reply()
        try:
            heard = await tap.collect(SWEEP_SECONDS + 1.0, SWEEP_SECONDS + 1.0 + FIRST_AUDIO_TIMEOUT_S)
        except TimeoutError:
            _measure_input(report, quiet)
            report.problems.append("the microphone stopped delivering audio while the sweep played; "
                                   "check its cable or USB connection")
            return report
        judge(report, quiet, heard, resample(test_signal, SWEEP_RATE, RATE))
        return report
    finally:
        capture.close()
        player.close()
        if own_pa:
            pa.terminate()


def _measure_input(report: SelfTestReport, samples: np.ndarray) -> None:
    report.input_peak_dbfs = _peak_dbfs(samples)
    report.clipped_fraction = float(np.mean(np.abs(samples) >= 0.999)) if len(samples) else None


def judge(report: SelfTestReport, quiet: np.ndarray, heard: np.ndarray, reference: np.ndarray) -> None:
    """Fill in the levels from the room (`quiet`) and the sweep as heard, and what is wrong with them."""
    both = np.concatenate([quiet, heard])
    _measure_input(report, both)
    if report.input_peak_dbfs == -math.inf:
        report.problems.append(SILENT_MIC_ADVICE)
        return  # a sweep level and a margin over silence would be numbers nobody measured
    if report.clipped_fraction is not None and report.clipped_fraction > CLIP_FRACTION:
        report.problems.append("the microphone clips; lower its gain (alsamixer, or amixer) or move the speaker away")
    # the loudest stretch as long as the sweep, wherever the device latency put it
    window = len(reference)
    if len(heard) >= window:
        energy = np.convolve(np.square(heard.astype(np.float64)), np.ones(window), mode="valid")
        start = int(np.argmax(energy))
        report.sweep_level_dbfs = _dbfs(heard[start : start + window])
        corr = np.correlate(heard, reference, mode="valid")
        report.echo_delay_ms = float(np.argmax(np.abs(corr))) / RATE * 1000
    report.speaker_heard = _heard(report.sweep_level_dbfs, report.noise_floor_dbfs)
    if not report.speaker_heard:
        report.problems.append(_not_heard_advice(report.volume))


def _heard(sweep_dbfs: float | None, floor_dbfs: float | None) -> bool:
    """The sweep rose HEARD_DB above the room (any sound over a digitally silent room counts)."""
    if not (_is_number(sweep_dbfs) and _is_number(floor_dbfs)) or sweep_dbfs == -math.inf:
        return False
    return floor_dbfs == -math.inf or sweep_dbfs - floor_dbfs >= HEARD_DB


def _not_heard_advice(volume: int | None) -> str:
    played_at = f"the sweep played at the appliance's volume {volume} of 100" if volume is not None else (
        "the appliance's volume")
    return (
        "the microphone does not hear the speaker; check the speaker is connected and audio.output_device, "
        f"then the volume: {played_at} (`appliance ctl volume N` sets it, 0-100, and it is remembered) "
        "and the card's own level (alsamixer, or amixer)"
    )


async def audio_test_command(cfg: Config, printer: Callable[[str], None] = print_now) -> int:
    report = await run_self_test(cfg)
    for line in report.lines():
        printer(escape_controls(line))  # device names come from the drivers and the config file
    return 0 if report.ok else 1
