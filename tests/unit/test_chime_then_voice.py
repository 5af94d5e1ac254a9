"""An announcement's chime comes first and the voice after it, not both at once.

The Player runs on the virtual sound card (real callbacks on its own thread, 10x real time); what
the card played is searched for the reply's 440 Hz tone, which the chime (every note above 1 kHz)
does not contain.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from appliance.audio.earcons import earcon
from appliance.audio.speaker import Player
from appliance.audio.virtual_card import MIC_NAME, SPEAKER_NAME, VirtualCard
from appliance.live.messages import OUTPUT_RATE
from appliance.settings.schema import AudioConfig

CARD_RATE = 48000
TONE_HZ = 440.0
WINDOW = CARD_RATE // 100  # 10 ms


def tone_pcm(seconds: float) -> bytes:
    t = np.arange(int(seconds * OUTPUT_RATE)) / OUTPUT_RATE
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t) * 32767).astype("<i2").tobytes()


def play_announcement(after_earcons: bool) -> tuple[np.ndarray, int]:
    """The card's output (mono float) and the chime's length in card frames."""

    async def run() -> np.ndarray:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=10.0)
        cfg = dataclasses.replace(AudioConfig(), input_device=MIC_NAME, output_device=SPEAKER_NAME, volume=80)
        player = Player(cfg, loop, pa=card)
        drained = asyncio.Event()
        player.events.on_drained = lambda _at: drained.set()
        try:
            assert player.start() is not None
            assert player.play_earcon("announce")
            player.new_reply(after_earcons=after_earcons)
            pcm = tone_pcm(0.4)
            step = OUTPUT_RATE // 25 * 2  # 40 ms chunks, all at once: the service sends faster than real time
            for i in range(0, len(pcm), step):
                player.feed(pcm[i:i + step])
            player.end_of_reply()
            await asyncio.wait_for(drained.wait(), 20)
            assert await asyncio.to_thread(card.wait_output_frames, card.output_frames_played + WINDOW * 4, 10.0)
            assert player.stats.callback_errors == 0
        finally:
            player.close()
            card.terminate()
        return card.recorded()[:, 0].astype(np.float64) / 32768.0

    return asyncio.run(run()), earcon("announce", CARD_RATE).size


def tone_level(x: np.ndarray) -> np.ndarray:
    """The 440 Hz amplitude in each 10 ms window (Hann-windowed DFT bin)."""
    n = len(x) // WINDOW
    frames = x[: n * WINDOW].reshape(n, WINDOW) * np.hanning(WINDOW)
    basis = np.exp(-2j * np.pi * TONE_HZ * np.arange(WINDOW) / CARD_RATE)
    return np.abs(frames @ basis) * 4 / WINDOW


def onsets(after_earcons: bool) -> tuple[int, int, int]:
    """(chime start, chime end, tone onset) in card frames."""
    played, chime = play_announcement(after_earcons)
    start = int(np.flatnonzero(np.abs(played) > 1e-4)[0])
    loud = np.flatnonzero(tone_level(played) > 0.02)
    assert loud.size, "the reply never sounded"
    return start, start + chime, int(loud[0]) * WINDOW


def test_the_reply_of_an_announcement_starts_when_its_chime_has_ended() -> None:
    start, end, tone = onsets(after_earcons=True)
    assert tone >= end - 2 * WINDOW, f"the voice starts {(end - tone) / CARD_RATE:.3f} s before the chime ends"
    assert tone - end < CARD_RATE // 10, "and follows it closely (within 100 ms)"


def test_an_ordinary_reply_does_not_wait_for_an_earcon() -> None:
    """The control: a reply without after_earcons starts during the chime (so the test above can fail)."""
    start, end, tone = onsets(after_earcons=False)
    assert tone < start + (end - start) // 2
