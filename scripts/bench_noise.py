#!/usr/bin/env python3
"""What `[audio] noise_suppression` and `auto_gain` do to a kitchen turn, and what they cost.

A scene is speech (espeak-ng, or a generated voice without it) over a generated extractor fan: pink
and brown noise, a motor hum on the 50 Hz harmonics and a broadband whoosh that swells and fades, mixed
at 0 dB and +6 dB SNR (speech power over its active frames / noise power, full band), plus the quiet
background of the endpointing tests (white noise at -50 dBFS). Each scene runs through the
microphone's real gate (`PrerollGate`): two seconds at rest, then a press 200 ms after the speech
began, so the first syllable comes from the pre-roll and the processor has heard only 140 ms of the
room when it starts.

Printed per scene and setting:
  seg SNR   speech-band segmental SNR against the clean reference: per 20 ms frame (10 ms hop) where
            the clean speech is active (within 40 dB of its loudest frame), the 300-3400 Hz spectral
            magnitudes of the clean speech over those of the error, clamped to [-10, 35] dB, averaged;
            after the processor's delay and one overall gain are taken out. Magnitudes, because the
            library always runs a high-pass filter whose phase shift alone would read as "noise"
  noise     level change of the frames where nobody speaks (dB)
  speech    level change of the speech itself: least-squares gain of the output onto the clean speech
  first     the first 100 ms of speech: energy after / before (dB), and the speech gain over those
            100 ms as above (how much of the first syllable survived)
  VAD end   the tap-to-talk end-of-speech frame (Endpointer, frames since the pre-roll began; "-" is
            no end before the scene ran out: the fan kept the VAD hearing speech)
"cold" is noise suppression without its warm-up (`cleanup.WARMUP_MS`): the processor starts at the
pre-roll, as the microphone would without it.
Then CPU: time.process_time per second of audio over 60 s of frames, next to webrtcvad on the same frames.

Usage: scripts/bench_noise.py   (about half a minute; informative numbers, nothing is asserted)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import webrtcvad  # noqa: E402

from appliance.audio.capture import PrerollGate  # noqa: E402
from appliance.audio.cleanup import Cleanup, Passthrough  # noqa: E402
from appliance.audio.devices import InputFormat  # noqa: E402
from appliance.audio.endpointing import Endpointer  # noqa: E402
from appliance.audio.frames import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, RATE, ms_to_frames  # noqa: E402
from appliance.audio.speech import utterance  # noqa: E402
from appliance.settings.schema import AudioConfig, VadConfig  # noqa: E402

TEXT = "Turn on the kitchen light please"
REST_S = 2.0  # the microphone rests this long before the press
SPOKEN_BEFORE_PRESS_MS = 200
TAIL_S = 2.5
SETTINGS = [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (0, 3), (2, 3)]  # (noise_suppression, auto_gain)
COLD = (2, 0)  # also run without the warm-up, to show what it buys the first syllable
CPU_SECONDS = 60
FIRST_MS = 100
BAND_HZ = (300.0, 3400.0)
HOP = FRAME_SAMPLES // 2


# ------------------------------------------------------------------------------------------------ signals


def speech() -> tuple[np.ndarray, str]:
    """The utterance, trimmed to where its energy starts and ends."""
    pcm, source = utterance(TEXT, RATE)
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    loud = np.nonzero(np.abs(x) > np.abs(x).max() * 0.01)[0]
    return x[loud[0] : loud[-1] + 1], source


def coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= f[1:] ** (exponent / 2)
    spectrum[0] = 0
    y = np.fft.irfft(spectrum, n)
    return y / y.std()


def fan(n: int, seed: int = 5) -> np.ndarray:
    """An extractor fan: pink + brown rumble, hum at 50 Hz and its harmonics, a swelling whoosh; unit RMS."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    rumble = coloured(rng, n, 1.0) + 0.7 * coloured(rng, n, 2.0)
    hum = sum(a * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) for k, a in
              [(1, 0.6), (2, 1.0), (3, 0.4), (4, 0.3), (6, 0.15)])
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= np.exp(-(((f - 1500) / 1800) ** 2))  # air through the blades: broad, centred mid-band
    whoosh = np.fft.irfft(spectrum, n)
    whoosh *= (1 + 0.35 * np.sin(2 * np.pi * 0.7 * t)) / whoosh.std()
    y = rumble + 0.5 * hum + 0.9 * whoosh
    return y / y.std()


@dataclass(frozen=True)
class Scene:
    name: str
    clean: np.ndarray  # speech alone, placed in time
    noisy: np.ndarray  # what the microphone hears
    speech_start: int  # sample
    speech_end: int
    press_frame: int  # the frame (chunk) at which the button goes down


def make_scene(name: str, voice: np.ndarray, noise: Callable[[int], np.ndarray], snr_db: float | None) -> Scene:
    start = int((REST_S * 1000 - SPOKEN_BEFORE_PRESS_MS) * RATE / 1000)
    n = start + voice.size + int(TAIL_S * RATE)
    n += -n % FRAME_SAMPLES
    clean = np.zeros(n)
    clean[start : start + voice.size] = voice
    background = noise(n)
    if snr_db is not None:  # scale the unit-RMS noise against the speech's active power
        frames = voice[: voice.size - voice.size % FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        power = (frames**2).mean(axis=1)
        speech_power = power[power > power.max() * 1e-4].mean()
        background = background * np.sqrt(speech_power / 10 ** (snr_db / 10))
    noisy = np.clip(np.rint(clean + background), -32768, 32767)
    return Scene(name, clean, noisy, start, start + voice.size, int(REST_S * 1000) // FRAME_MS)


def white(dbfs: float) -> Callable[[int], np.ndarray]:
    return lambda n: np.random.default_rng(0).normal(0.0, 32768 * 10 ** (dbfs / 20), n)


# ------------------------------------------------------------------------------------------------ the turn


MONO_16K = InputFormat(None, RATE, 1, "int16", FRAME_SAMPLES)  # type: ignore[arg-type]


def through_gate(scene: Scene, cleaner: Cleanup | Passthrough) -> tuple[list[bytes], int]:
    """The frames a press hands over (pre-roll, then live) and how many of them are pre-roll."""
    pcm = scene.noisy.astype("<i2").tobytes()
    chunks = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    gate = PrerollGate(MONO_16K, -1, ms_to_frames(AudioConfig().preroll_ms), cleaner)
    for chunk in chunks[: scene.press_frame]:
        gate.chunk(chunk, None)
    entries = [entry for chunk in chunks[scene.press_frame :] for entry in gate.chunk(chunk, 1)]
    return [frame for _, _, frame in entries], sum(is_pre for _, is_pre, _ in entries)


def vad_end(frames: Sequence[bytes], preroll: int) -> int | None:
    ep = Endpointer("tap", AudioConfig(), VadConfig())
    for i, frame in enumerate(frames):
        if ep.push(frame, preroll=i < preroll) is not None:
            return ep.end_frame
    return None


# ------------------------------------------------------------------------------------------------ measures


def samples(frames: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), "<i2").astype(np.float64)


def delay_of(out: np.ndarray, ref: np.ndarray, most: int = 400) -> int:
    """Samples by which `out` lags `ref` (0..most), from their cross-correlation."""
    scores = [float(np.dot(out[d:], ref[: ref.size - d])) for d in range(most + 1)]
    return int(np.argmax(scores))


def aligned(out: np.ndarray, delay: int) -> np.ndarray:
    return np.concatenate([out[delay:], np.zeros(delay)])


def gain_onto(est: np.ndarray, ref: np.ndarray) -> float:
    """The least-squares factor g with g * ref closest to est: how much of `ref` is in `est`."""
    return float(np.dot(est, ref) / max(np.dot(ref, ref), 1e-9))


def spectra(x: np.ndarray) -> np.ndarray:
    """Magnitudes of 20 ms Hann-windowed frames (10 ms hop), speech-band bins only."""
    cut = x.size - (x.size - FRAME_SAMPLES) % HOP
    frames = np.lib.stride_tricks.sliding_window_view(x[:cut], FRAME_SAMPLES)[::HOP]
    f = np.fft.rfftfreq(FRAME_SAMPLES, 1 / RATE)
    keep = (f >= BAND_HZ[0]) & (f <= BAND_HZ[1])
    return np.abs(np.fft.rfft(frames * np.hanning(FRAME_SAMPLES), axis=1))[:, keep]


def segmental_snr(est: np.ndarray, ref: np.ndarray) -> float:
    """Speech-band segmental SNR on spectral magnitudes: blind to the high-pass filter's phase shift."""
    s, y = spectra(ref), spectra(est)
    y = y / max(float(np.sum(y * s) / np.sum(s * s)), 1e-6)  # an overall gain (auto_gain) is not noise
    power = (s**2).sum(axis=1)
    active = power > power.max() * 1e-4
    per_frame = 10 * np.log10(power[active] / np.maximum(((y[active] - s[active]) ** 2).sum(axis=1), 1e-9))
    return float(np.clip(per_frame, -10, 35).mean())


def db(ratio: float) -> float:
    return 10 * np.log10(max(ratio, 1e-12))


@dataclass
class Row:
    seg_snr: float
    noise_db: float
    speech_db: float
    first_energy_db: float
    first_speech_db: float
    vad_end: int | None
    delay_ms: float


class ColdCleanup(Cleanup):
    """Cleanup that hears only the pre-roll's own lead before the speech."""

    warmup_ms = 0


def measure(scene: Scene, setting: tuple[int, int], before: np.ndarray, origin: int, *, cold: bool = False) -> Row:
    cleaner = (ColdCleanup if cold else Cleanup)(*setting) if any(setting) else Passthrough()
    frames, preroll = through_gate(scene, cleaner)
    out = samples(frames)
    clean = scene.clean[origin : origin + out.size]
    delay = delay_of(out, before)
    out_a = aligned(out, delay)
    s0, s1 = scene.speech_start - origin, scene.speech_end - origin
    quiet = slice(s1 + int(0.3 * RATE), out.size)  # 300 ms after the speech: the room alone
    first = slice(s0, s0 + FIRST_MS * RATE // 1000)
    return Row(
        seg_snr=segmental_snr(out_a, clean),
        noise_db=db(np.mean(out_a[quiet] ** 2) / np.mean(before[quiet] ** 2)),
        speech_db=20 * np.log10(max(gain_onto(out_a[s0:s1], clean[s0:s1]), 1e-6)),
        first_energy_db=db(np.mean(out_a[first] ** 2) / np.mean(before[first] ** 2)),
        first_speech_db=20 * np.log10(max(gain_onto(out_a[first], clean[first]), 1e-6)),
        vad_end=vad_end(frames, preroll),
        delay_ms=delay * 1000 / RATE,
    )


def setting_name(setting: tuple[int, int]) -> str:
    ns, ag = setting
    if not (ns or ag):
        return "off"
    return " + ".join(part for part in (f"ns {ns}" if ns else "", f"agc {ag}" if ag else "") if part)


def print_quality(scenes: Sequence[Scene]) -> None:
    head = (f"{'scene':<16} {'setting':<12} {'seg SNR dB':>10} {'noise dB':>9} {'speech dB':>9} "
            f"{'first 100 ms: energy / speech dB':>33} {'VAD end':>8} {'delay ms':>8}")
    print(head)
    print("-" * len(head))
    for scene in scenes:
        frames, _ = through_gate(scene, Passthrough())
        before = samples(frames)
        origin = (scene.press_frame - ms_to_frames(AudioConfig().preroll_ms)) * FRAME_SAMPLES
        assert np.array_equal(before, scene.noisy[origin : origin + before.size]), "the gate moved the audio"
        for setting, cold in [(setting, False) for setting in SETTINGS] + [(COLD, True)]:
            row = measure(scene, setting, before, origin, cold=cold)
            end = "-" if row.vad_end is None else str(row.vad_end)
            name = setting_name(setting) + (" cold" if cold else "")
            print(f"{scene.name:<16} {name:<12} {row.seg_snr:>10.1f} {row.noise_db:>9.1f} "
                  f"{row.speech_db:>9.1f} {row.first_energy_db:>20.1f} / {row.first_speech_db:>5.1f}    "
                  f"{end:>8} {row.delay_ms:>8.1f}")
        print()


# ------------------------------------------------------------------------------------------------ cost


def cpu_per_audio_second(step: Callable[[list[bytes]], object], frames: list[bytes]) -> float:
    """process_time spent per second of audio, best of five (the reference is small: keep noise out)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        step(frames)
        best = min(best, time.process_time() - start)
    return best / (len(frames) * FRAME_MS / 1000)


def print_cost(scene: Scene) -> None:
    pcm = scene.noisy.astype("<i2").tobytes()
    base = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    count = CPU_SECONDS * 1000 // FRAME_MS
    frames = [base[i % len(base)] for i in range(count)]

    def vad_step(fs: list[bytes]) -> None:
        vad = webrtcvad.Vad(VadConfig().aggressiveness)
        for frame in fs:
            vad.is_speech(frame, RATE)

    reference = cpu_per_audio_second(vad_step, frames)
    print(f"CPU per minute of audio ({CPU_SECONDS} s of '{scene.name}' frames, time.process_time, this machine)")
    print(f"{'setting':<12} {'CPU s per audio min':>20} {'share of one core':>18} {'x webrtcvad':>12}")
    print(f"{'webrtcvad':<12} {reference * 60:>20.3f} {reference * 100:>17.2f}% {1.0:>12.1f}")
    for setting in SETTINGS[1:]:
        cleaner = Cleanup(*setting)
        cost = cpu_per_audio_second(cleaner.process, frames)
        print(f"{setting_name(setting):<12} {cost * 60:>20.3f} {cost * 100:>17.2f}% {cost / reference:>12.1f}")


def main() -> None:
    voice, source = speech()
    print(f"speech: {TEXT!r} ({source}, {voice.size / RATE:.2f} s); press {SPOKEN_BEFORE_PRESS_MS} ms after it "
          f"began, pre-roll {AudioConfig().preroll_ms} ms")
    print()
    scenes = [
        make_scene("fan, 0 dB SNR", voice, fan, 0.0),
        make_scene("fan, +6 dB SNR", voice, fan, 6.0),
        make_scene("quiet -50 dBFS", voice, white(-50.0), None),
    ]
    print_quality(scenes)
    print_cost(scenes[0])


if __name__ == "__main__":
    main()
