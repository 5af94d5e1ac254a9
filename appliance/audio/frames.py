"""The unit of the audio pipeline: 20 ms of 16 kHz mono s16le.

webrtcvad takes 10, 20 or 30 ms frames; 20 ms is short enough for a snappy
endpoint and long enough that per-frame overhead stays small on a Pi Zero 2 W.
Time inside the pipeline is counted in these frames, never read from a clock, so
an unpaced test device and a real sound card behave the same.
"""

RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2


def ms_to_frames(ms: float) -> int:
    """Whole frames covering `ms` milliseconds (rounded up, so a limit is never cut short)."""
    return max(0, -(-int(round(ms)) // FRAME_MS))
