"""The resting microphone: raw audio between turns, the same frames as a running converter during them.

`PrerollGate` is what PortAudio's thread runs for a gated `Capture`; `Uplink.attach_gate` is the turn
side. Both are driven here with made-up device chunks and a recording stand-in for the session, so a
mistake in the pre-roll bookkeeping fails in milliseconds.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from appliance.app.turntaking import Mode, Uplink
from appliance.audio.capture import FrameConverter, PrerollGate
from appliance.audio.devices import InputFormat
from appliance.audio.frames import FRAME_SAMPLES, RATE
from appliance.audio.preroll import RawPreroll
from appliance.settings.schema import AudioConfig, VadConfig

PREROLL = 15  # frames in the default 300 ms


def device_chunks(rate: int, channels: int, fmt: str, seconds: float, seed: int = 3) -> tuple[InputFormat, list[bytes]]:
    """20 ms device chunks of a tone plus noise, as a real microphone would hand them over."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    mono = 0.3 * np.sin(2 * np.pi * 330 * t) + rng.normal(0, 0.02, n)
    inter = np.repeat(mono[:, None], channels, axis=1)
    if fmt == "int32":
        raw = (np.clip(inter, -1, 1) * (2**31 - 1)).astype("<i4")
    else:
        raw = (np.clip(inter, -1, 1) * 32767).astype("<i2")
    per_chunk = rate // 50
    data = raw.reshape(-1).tobytes()
    step = per_chunk * channels * raw.itemsize
    chunks = [data[i : i + step] for i in range(0, len(data) - step + 1, step)]
    return InputFormat(None, rate, channels, fmt, frames_per_buffer=per_chunk), chunks  # type: ignore[arg-type]


def running_frames(fmt: InputFormat, chunks: list[bytes]) -> list[list[bytes]]:
    """What an always-running converter makes of each chunk (the reference)."""
    converter = FrameConverter(fmt, -1)
    return [converter.convert(c) for c in chunks]


def assert_same_audio(got: list[bytes], want: list[bytes]) -> None:
    assert len(got) == len(want)
    a = np.frombuffer(b"".join(got), "<i2").astype(int)
    b = np.frombuffer(b"".join(want), "<i2").astype(int)
    assert np.max(np.abs(a - b)) <= 1  # float rounding at most; the same samples at the same times


@pytest.mark.parametrize("rate,channels,fmt", [(48000, 2, "int32"), (44100, 2, "int16"), (16000, 1, "int16")])
def test_a_press_gets_exactly_the_last_300_ms_then_the_live_frames(rate, channels, fmt):
    info, chunks = device_chunks(rate, channels, fmt, 3.0)
    reference = running_frames(info, chunks)
    gate = PrerollGate(info, -1, PREROLL)
    press = 60  # chunk index: 1.2 s of rest first
    for chunk in chunks[:press]:
        assert gate.chunk(chunk, None) == []  # resting: nothing converted, nothing handed over
    got = [entry for chunk in chunks[press : press + 30] for entry in gate.chunk(chunk, 1)]
    preroll = [frame for gen, is_pre, frame in got if is_pre]
    live = [frame for gen, is_pre, frame in got if not is_pre]
    assert {gen for gen, _, _ in got} == {1}
    before = [f for frames in reference[:press] for f in frames]
    assert_same_audio(preroll, before[-PREROLL:])
    assert_same_audio(live, [f for frames in reference[press : press + 30] for f in frames])
    # pre-roll first, then live, in order
    assert [is_pre for _, is_pre, _ in got[:PREROLL + 1]] == [True] * PREROLL + [False]


def test_a_press_soon_after_a_turn_still_gets_a_whole_preroll():
    info, chunks = device_chunks(48000, 2, "int32", 3.0)
    reference = running_frames(info, chunks)
    gate = PrerollGate(info, -1, PREROLL)
    for chunk in chunks[:40]:
        gate.chunk(chunk, None)
    for chunk in chunks[40:70]:
        gate.chunk(chunk, 1)
    for chunk in chunks[70:73]:  # only 60 ms of rest between the turns
        gate.chunk(chunk, None)
    got = gate.chunk(chunks[73], 2)
    preroll = [frame for gen, is_pre, frame in got if is_pre]
    made_before = [f for frames in reference[:73] for f in frames]  # (the resampler's delay shifts frames)
    assert_same_audio(preroll, made_before[-PREROLL:])


def test_a_new_press_during_a_turn_takes_its_preroll_from_the_frames_already_made():
    info, chunks = device_chunks(16000, 1, "int16", 2.0)
    reference = [f for frames in running_frames(info, chunks) for f in frames]
    gate = PrerollGate(info, -1, PREROLL)
    for chunk in chunks[:30]:
        gate.chunk(chunk, 1)
    got = gate.chunk(chunks[30], 2)
    assert [(gen, is_pre) for gen, is_pre, _ in got] == [(2, True)] * PREROLL + [(2, False)]
    assert_same_audio([f for _, _, f in got], reference[30 - PREROLL : 31])


def test_right_after_the_stream_opened_the_preroll_is_what_there_is():
    info, chunks = device_chunks(48000, 2, "int32", 1.0)
    gate = PrerollGate(info, -1, PREROLL)
    gate.chunk(chunks[0], None)
    gate.chunk(chunks[1], None)
    got = gate.chunk(chunks[2], 1)
    assert 1 <= sum(is_pre for _, is_pre, _ in got) <= 2
    assert sum(not is_pre for _, is_pre, _ in got) == 1


def test_no_preroll_setting_means_no_preroll_frames():
    info, chunks = device_chunks(48000, 2, "int32", 1.0)
    gate = PrerollGate(info, -1, 0)
    for chunk in chunks[:20]:
        gate.chunk(chunk, None)
    assert [is_pre for _, is_pre, _ in gate.chunk(chunks[20], 1)] == [False]


def test_the_raw_ring_stays_bounded_however_long_the_box_rests():
    ring = RawPreroll(1000)
    for _ in range(10_000):
        ring.push(bytes(384))
    held = len(ring)
    assert 1000 <= held < 1000 + 384
    assert len(ring.take()) == held
    assert len(ring) == 0  # take() empties it
    with pytest.raises(ValueError):
        RawPreroll(-1)


# ---------------------------------------------------------------------------------------- the turn side


class RecordingWire:
    """Stands in for LiveSession: records what the uplink sends (a named fake, no socket)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.turns = 0

    async def activity_start(self) -> int:
        self.turns += 1
        self.sent.append(("start", b""))
        return self.turns

    async def send_audio(self, pcm: bytes) -> None:
        self.sent.append(("audio", pcm))

    async def activity_end(self) -> bool:
        self.sent.append(("end", b""))
        return True


class FakeMic:
    """Stands in for a gated Capture: records listen/idle (a named fake)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def listen(self) -> None:
        self.calls.append("listen")

    def idle(self) -> None:
        self.calls.append("idle")


def voiced(frames: int, seed: int = 1) -> list[bytes]:
    t = np.arange(frames * FRAME_SAMPLES) / RATE
    phase = 2 * np.pi * (110 + 13 * seed) * t
    signal = 0.4 * sum(np.sin(k * phase) / k for k in range(1, 10)) / 2
    pcm = (signal * 32767).astype("<i2").tobytes()
    return [pcm[i * 640 : (i + 1) * 640] for i in range(frames)]


def quiet(frames: int) -> list[bytes]:
    rng = np.random.default_rng(5)
    return [(rng.normal(0, 10, FRAME_SAMPLES)).astype("<i2").tobytes() for _ in range(frames)]


def gated_uplink() -> tuple[RecordingWire, FakeMic, Uplink]:
    wire, mic = RecordingWire(), FakeMic()
    uplink = Uplink(wire, AudioConfig(), VadConfig())  # type: ignore[arg-type]
    uplink.attach_gate(mic)
    return wire, mic, uplink


async def hold_turn(uplink: Uplink, wire: RecordingWire, *, before: list[bytes], preroll: list[bytes],
                    live: list[bytes]) -> bytes:
    """Frames delivered before the press, the microphone's pre-roll, live speech, release, post-roll
    silence; returns the audio that went out."""
    ended = asyncio.Event()
    uplink.on_turn_end = lambda report: ended.set()
    sender = asyncio.create_task(uplink.run())
    for frame in before:
        uplink.on_frame(frame)
    uplink.press(Mode.HOLD)
    for frame in preroll:
        uplink.on_preroll(frame)
    for frame in live:
        uplink.on_frame(frame)
    uplink.release()
    for frame in quiet(60):
        uplink.on_frame(frame)
    await asyncio.wait_for(ended.wait(), 2)
    sender.cancel()
    return b"".join(pcm for kind, pcm in wire.sent if kind == "audio")


def test_the_uplink_wakes_the_microphone_at_a_press_and_rests_it_when_the_turn_ends():
    wire, mic, uplink = gated_uplink()
    speech = voiced(15)  # the user started talking 300 ms before the press
    sent = asyncio.run(hold_turn(uplink, wire, before=[], preroll=speech, live=voiced(20, 2)))
    assert mic.calls == ["listen", "idle"]
    assert sent.startswith(b"".join(speech))  # the first syllable, from before the press, went out first
    assert wire.sent[0][0] == "start" and wire.sent[-1][0] == "end"


def test_a_press_that_was_a_gesture_rests_the_microphone_too():
    wire, mic, uplink = gated_uplink()
    uplink.press(Mode.HOLD)
    assert mic.calls == ["listen"]
    for frame in quiet(5):
        uplink.on_frame(frame)
    assert uplink.cancel()
    assert mic.calls == ["listen", "idle"]


def test_frames_between_turns_are_not_kept_by_a_gated_uplink():
    """The pre-roll comes from the microphone: stale frames from the end of the last turn must not join it."""
    wire, mic, uplink = gated_uplink()
    stale, fresh = voiced(10, 9), voiced(25, 4)
    sent = asyncio.run(hold_turn(uplink, wire, before=stale, preroll=[], live=fresh))
    assert b"".join(stale) not in sent
    assert sent.startswith(fresh[0])
