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

from appliance.settings.paths import state_dir
from appliance.settings.schema import Config
from appliance.audio.frames import FRAME_MS, RATE
from appliance.audio.resample import resample

SWEEP_RATE = 24000
SWEEP_SECONDS = 1.5
QUIET_SECONDS = 1.0
#: the mic "hears the speaker" when the sweep lifts the level this much above the room
HEARD_DB = 10.0
CLIP_FRACTION = 0.001
FIRST_AUDIO_TIMEOUT_S = 5.0


@dataclass
class SelfTestReport:
    input_device: str = ""
    output_device: str = ""
    noise_floor_dbfs: float = -math.inf
    input_peak_dbfs: float = -math.inf
    sweep_level_dbfs: float = -math.inf
    clipped_fraction: float = 0.0
    speaker_heard: bool = False
    echo_delay_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [
            f"microphone: {self.input_device}",
            f"speaker:    {self.output_device}",
            f"noise floor {self.noise_floor_dbfs:6.1f} dBFS, input peak {self.input_peak_dbfs:6.1f} dBFS, "
            f"clipped {self.clipped_fraction * 100:.2f} % of samples",
        ]
        heard = f"yes, {self.sweep_level_dbfs - self.noise_floor_dbfs:.1f} dB above the room" if self.speaker_heard else "no"
        if self.echo_delay_ms is not None and self.speaker_heard:
            heard += f", {self.echo_delay_ms:.0f} ms from speaker to microphone"
        out.append(f"the microphone hears the speaker: {heard}")
        out.extend(f"PROBLEM: {p}" for p in self.problems)
        out.append("audio test passed" if self.ok else "audio test failed")
        return out


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
    rms = float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) if len(x) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


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
            report.input_device = capture.start().describe()
            report.output_device = player.start().describe()
        except AudioDeviceError as exc:
            report.problems.append(str(exc))
            return report
        try:
            await tap.collect(0.3, FIRST_AUDIO_TIMEOUT_S)  # let the device settle
            quiet = await tap.collect(QUIET_SECONDS, QUIET_SECONDS + FIRST_AUDIO_TIMEOUT_S)
        except TimeoutError:
            report.problems.append(
                "the microphone delivers no audio; check it is plugged in and that audio.input_device is right "
                "(see `appliance devices`)"
            )
            return report
        report.noise_floor_dbfs = _dbfs(quiet)

        test_signal = sweep()
        pcm = (np.clip(test_signal, -1, 1) * 32767).astype("<i2").tobytes()
        player.new_reply()
        player.feed(pcm)
        player.end_of_reply()
        heard = await tap.collect(SWEEP_SECONDS + 1.0, SWEEP_SECONDS + 1.0 + FIRST_AUDIO_TIMEOUT_S)
        _judge(report, quiet, heard, resample(test_signal, SWEEP_RATE, RATE))
        return report
    finally:
        capture.close()
        player.close()
        if own_pa:
            pa.terminate()


def _judge(report: SelfTestReport, quiet: np.ndarray, heard: np.ndarray, reference: np.ndarray) -> None:
    both = np.concatenate([quiet, heard])
    report.input_peak_dbfs = 20 * math.log10(max(float(np.max(np.abs(both))), 1e-9))
    report.clipped_fraction = float(np.mean(np.abs(both) >= 0.999))
    if not np.any(both):
        report.problems.append(
            "the microphone gives digital silence; check its capture switch and gain (alsamixer) "
            "and audio.input_channel"
        )
        return
    if report.clipped_fraction > CLIP_FRACTION:
        report.problems.append("the microphone clips; lower its gain (alsamixer) or move the speaker away")
    # the loudest stretch as long as the sweep, wherever the device latency put it
    window = len(reference)
    if len(heard) >= window:
        energy = np.convolve(np.square(heard.astype(np.float64)), np.ones(window), mode="valid")
        start = int(np.argmax(energy))
        report.sweep_level_dbfs = _dbfs(heard[start : start + window])
        corr = np.correlate(heard, reference, mode="valid")
        report.echo_delay_ms = float(np.argmax(np.abs(corr))) / RATE * 1000
    report.speaker_heard = report.sweep_level_dbfs - report.noise_floor_dbfs >= HEARD_DB
    if not report.speaker_heard:
        report.problems.append(
            "the microphone does not hear the speaker; check the speaker is connected, audio.output_device, "
            "and the volume (`appliance` volume or alsamixer)"
        )


async def audio_test_command(cfg: Config, printer: Callable[[str], None] = print) -> int:
    report = await run_self_test(cfg)
    for line in report.lines():
        printer(line)
    return 0 if report.ok else 1
