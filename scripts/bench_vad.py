#!/usr/bin/env python3
"""What endpointing costs per 20 ms frame, next to a bare webrtcvad call measured in the same run.

For speech (espeak-ng, or a generated voice without it), digital silence and loud white
noise (-30 dBFS), it times a plain `webrtcvad.Vad.is_speech` call (the reference),
`SpeechDetector.push` (reference plus smoothing) and `Endpointer.push` (all of it), and
prints microseconds per frame, the share of one core at 50 frames/s, and the ratio to the
reference.  Each figure is the best of a few repeats, to keep scheduler noise out.

Usage: scripts/bench_vad.py   (a few seconds; informative numbers, nothing is asserted)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import webrtcvad  # noqa: E402

from appliance.audio.endpointing import Endpointer, SpeechDetector  # noqa: E402
from appliance.audio.frames import FRAME_BYTES, FRAME_MS, RATE  # noqa: E402
from appliance.audio.speech import utterance  # noqa: E402
from appliance.settings.schema import AudioConfig, VadConfig  # noqa: E402

FRAMES = 3000  # 60 s of audio per run
REPEATS = 7
FRAMES_PER_SECOND = 1000 // FRAME_MS


def signals() -> dict[str, list[bytes]]:
    speech, source = utterance("Turn on the kitchen light please, and tell me the weather for tomorrow.", RATE)
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(0, 32768 * 10 ** (-30 / 20), FRAMES * FRAME_BYTES // 2), -32768, 32767)
    pcm = {
        f"speech ({source})": speech,
        "silence": bytes(FRAMES * FRAME_BYTES),
        "noise -30 dBFS": noise.astype("<i2").tobytes(),
    }
    out = {}
    for name, data in pcm.items():
        data = data[: len(data) - len(data) % FRAME_BYTES]
        frames = [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]
        out[name] = [frames[i % len(frames)] for i in range(FRAMES)]
    return out


def best_per_frame(make_step: Callable[[], Callable[[bytes], object]], frames: Sequence[bytes]) -> float:
    """Best time per frame in seconds; `make_step` builds fresh state for every repeat."""
    best = float("inf")
    for _ in range(REPEATS):
        step = make_step()
        start = time.perf_counter()
        for frame in frames:
            step(frame)
        best = min(best, (time.perf_counter() - start) / len(frames))
    return best


def reference_step() -> Callable[[bytes], object]:
    vad = webrtcvad.Vad(VadConfig().aggressiveness)
    return lambda frame: vad.is_speech(frame, RATE)


def detector_step() -> Callable[[bytes], object]:
    return SpeechDetector(VadConfig().aggressiveness).push


def endpointer_step() -> Callable[[bytes], object]:
    # Hold-to-talk, never released, longest turn: the endpointer runs for the whole signal.
    vad = dataclasses.replace(VadConfig(), max_turn_s=300.0)
    return Endpointer("hold", AudioConfig(), vad).push


def main() -> None:
    rows = []
    for name, frames in signals().items():
        reference = best_per_frame(reference_step, frames)
        for label, make in (
            ("webrtcvad is_speech (reference)", reference_step),
            ("SpeechDetector.push", detector_step),
            ("Endpointer.push", endpointer_step),
        ):
            per_frame = reference if make is reference_step else best_per_frame(make, frames)
            rows.append((name, label, per_frame * 1e6, per_frame * FRAMES_PER_SECOND * 100, per_frame / reference))

    print(f"{FRAMES} frames of {FRAME_MS} ms per run, best of {REPEATS}; "
          f"share of one core at {FRAMES_PER_SECOND} frames/s\n")
    header = f"{'signal':<22} {'what':<32} {'us/frame':>9} {'% core':>8} {'x ref':>6}"
    print(header)
    print("-" * len(header))
    for name, label, micros, share, ratio in rows:
        print(f"{name:<22} {label:<32} {micros:>9.2f} {share:>8.4f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
