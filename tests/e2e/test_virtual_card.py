"""The demo's virtual sound card, driven by the real capture and playback code.

What a user of `appliance demo` would notice: the question spoken into the virtual mic reaches the pipeline
at the right level and moment; the reply comes out in the WAV whole, undistorted and without long idle
silence around it; the real format selection settles on the card's one native format; the demo runs on a
machine without PyAudio; closing the card leaves no threads behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.audio import pa_constants, virtual_card
from appliance.audio.capture import Capture
from appliance.audio.devices import AudioDeviceError
from appliance.audio.frames import FRAME_SAMPLES, RATE
from appliance.audio.speaker import Player
from appliance.audio.resample import resample
from appliance.audio.speech import speechlike
from appliance.audio.virtual_card import MIC_NAME, SPEAKER_NAME, VirtualCard
from appliance.audio.virtual_stream import VirtualStream
from appliance.audio.wavio import read_wav
from appliance.settings.schema import AudioConfig

SPEED = 4.0
TIMEOUT_S = 5.0
MIC_RATE = 48000
SPEAKER_RATE = 48000
REPLY_RATE = 24000


def card_cfg(**changes: object) -> AudioConfig:
    base = {"input_device": MIC_NAME, "output_device": SPEAKER_NAME, "volume": 100, "earcons": False}
    return dataclasses.replace(AudioConfig(), **{**base, **changes})


def dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.sqrt(np.mean(np.square(x.astype(np.float64))))), 1e-12))


def tone(seconds: float, amplitude: float, rate: int = MIC_RATE, hz: float = 440.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)


# ---------------------------------------------------------------------------------------------- capture


def test_capture_hears_the_queued_tone_at_its_level_and_moment() -> None:
    lead_s, tone_s, tail_s = 0.3, 0.6, 0.3
    left, right = tone(tone_s, 0.5), tone(tone_s, 0.3)  # the mix of both channels is a 0.4 full-scale tone
    stereo = np.zeros((round((lead_s + tone_s + tail_s) * MIC_RATE), 2))
    start = round(lead_s * MIC_RATE)
    stereo[start : start + left.size, 0] = left
    stereo[start : start + right.size, 1] = right
    as_int32 = np.rint(stereo * 2**31).astype(np.int32)  # an I2S mic: the audio sits in the top bits
    wanted_frames = round((lead_s + tone_s + tail_s) * RATE) // FRAME_SAMPLES - 2

    async def run() -> tuple[list[bytes], bool]:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=SPEED)
        card.queue_input(as_int32)
        frames: list[bytes] = []
        enough = asyncio.Event()

        def on_frame(frame: bytes) -> None:
            frames.append(frame)
            if len(frames) >= wanted_frames:
                enough.set()

        capture = Capture(card_cfg(), on_frame, loop, pa=card)
        try:
            fmt = capture.start()
            assert (fmt.rate, fmt.channels, fmt.sample_format) == (MIC_RATE, 2, "int32")
            await asyncio.wait_for(enough.wait(), TIMEOUT_S)
            drained = await asyncio.to_thread(card.wait_input_drained, TIMEOUT_S)
        finally:
            capture.close()
            card.terminate()
        assert card.input_frames_delivered >= as_int32.shape[0]
        return frames, drained

    frames, drained = asyncio.run(run())
    assert drained
    assert all(len(f) == 640 for f in frames)
    heard = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64) / 32768.0

    onset = int(np.flatnonzero(np.abs(heard) > 0.2)[0])  # half the tone's amplitude
    assert abs(onset - lead_s * RATE) <= FRAME_SAMPLES, f"tone starts at sample {onset}, expected {lead_s * RATE:.0f}"

    steady = heard[round((lead_s + 0.1) * RATE) : round((lead_s + tone_s - 0.1) * RATE)]
    assert dbfs(steady) == pytest.approx(20 * np.log10(0.4 / np.sqrt(2)), abs=0.2)
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    assert np.fft.rfftfreq(steady.size, 1 / RATE)[int(np.argmax(spectrum))] == pytest.approx(440, abs=3)

    # Before the tone the room is quiet but never digitally silent (the VAD must see a real noise floor).
    room = heard[: round((lead_s - 0.05) * RATE)]
    assert np.count_nonzero(room) > room.size // 2
    assert -80 < dbfs(room) < -55


# ---------------------------------------------------------------------------------------------- playback


def test_player_reply_ends_up_in_the_trimmed_wav(tmp_path: Path) -> None:
    reply = np.frombuffer(speechlike(1.0, REPLY_RATE), dtype="<i2").astype(np.float32) / 32768.0
    idle_frames = round(0.4 * SPEAKER_RATE)

    async def run() -> tuple[VirtualCard, Player]:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=SPEED)
        player = Player(card_cfg(), loop, pa=card)
        drained = asyncio.Event()
        player.events.on_drained = lambda _at: drained.set()
        try:
            fmt = player.start()
            # The speaker takes only 48 kHz stereo int16: the real selection walks past 24 kHz and mono.
            assert (fmt.rate, fmt.channels, fmt.sample_format) == (SPEAKER_RATE, 2, "int16")
            assert await asyncio.to_thread(card.wait_output_frames, idle_frames, TIMEOUT_S)
            player.new_reply()
            pcm = (reply * 32768).astype("<i2").tobytes()
            for i in range(0, len(pcm), 1920):  # 40 ms chunks, as the Live API sends them
                player.feed(pcm[i : i + 1920])
            player.end_of_reply()
            await asyncio.wait_for(drained.wait(), TIMEOUT_S)
            after = card.output_frames_played + idle_frames
            assert await asyncio.to_thread(card.wait_output_frames, after, TIMEOUT_S)
        finally:
            player.close()
            card.terminate()
        return card, player

    card, player = asyncio.run(run())
    assert player.stats.callback_errors == 0 and player.underruns == 0
    raw = card.recorded()
    assert raw.dtype == np.int16 and raw.shape[1] == 2
    assert np.array_equal(raw[:, 0], raw[:, 1])  # the reply on both channels

    path = tmp_path / "reply.wav"
    seconds = card.write_output_wav(path)
    wav = read_wav(path)
    assert (wav.rate, wav.channels) == (SPEAKER_RATE, 1)
    played = wav.samples[:, 0].astype(np.float64)
    assert played.size / SPEAKER_RATE == pytest.approx(seconds)

    expected = resample(reply, REPLY_RATE, SPEAKER_RATE).astype(np.float64)
    loud = np.flatnonzero(np.abs(expected) * 32768 > virtual_card.SILENCE_PEAK)
    sound_len = int(loud[-1] - loud[0] + 1)
    margin = round(virtual_card.TRIM_MARGIN_S * SPEAKER_RATE)
    # Idle silence was cut down to the margins: ~0.4 s before and after the reply are gone.
    assert raw.shape[0] - played.size > 2 * idle_frames - 2 * margin - SPEAKER_RATE // 50
    assert abs(played.size - (sound_len + 2 * margin)) <= SPEAKER_RATE // 100
    quiet = margin - SPEAKER_RATE // 200  # a little less than the margin: the 5 ms fades may start inside it
    assert np.max(np.abs(played[:quiet])) * 32768 <= virtual_card.SILENCE_PEAK
    assert np.max(np.abs(played[-quiet:])) * 32768 <= virtual_card.SILENCE_PEAK

    # The reply itself: aligned, it matches the resampled reply closely and at the same level (volume 100).
    target = expected[loud[0] : loud[-1] + 1]
    size = played.size + target.size
    xcorr = np.fft.irfft(np.fft.rfft(played, size) * np.conj(np.fft.rfft(target, size)), size)
    lag = int(np.argmax(xcorr[: played.size - target.size + 1]))
    assert abs(lag - margin) <= SPEAKER_RATE // 1000
    segment = played[lag : lag + target.size]
    assert np.corrcoef(segment, target)[0, 1] > 0.99
    assert dbfs(segment) == pytest.approx(dbfs(target), abs=0.3)


def test_an_idle_speaker_gives_an_empty_trimmed_wav_and_the_full_idle_untrimmed(tmp_path: Path) -> None:
    card = VirtualCard(speed=SPEED)
    stream = card.open(
        rate=SPEAKER_RATE, channels=2, format=pa_constants.paInt16, output=True, frames_per_buffer=960,
        stream_callback=lambda _in, n, _t, _s: (bytes(n * 4), pa_constants.paContinue),
    )
    assert card.wait_output_frames(4800, TIMEOUT_S)
    stream.close()
    assert card.write_output_wav(tmp_path / "trimmed.wav") == 0.0
    untrimmed = card.write_output_wav(tmp_path / "idle.wav", trim_silence=False)
    assert untrimmed * SPEAKER_RATE == card.output_frames_played >= 4800
    card.terminate()


# ---------------------------------------------------------------------------------------------- formats


def test_only_the_native_format_opens_and_device_selection_finds_it() -> None:
    card = VirtualCard(speed=SPEED)
    mic, speaker = card.get_default_input_device_info(), card.get_default_output_device_info()
    assert (mic["name"], mic["maxInputChannels"], mic["defaultSampleRate"]) == (MIC_NAME, 2, 48000.0)
    assert (speaker["name"], speaker["maxOutputChannels"]) == (SPEAKER_NAME, 2)
    assert card.is_format_supported(48000, input_device=0, input_channels=2, input_format=pa_constants.paInt32)
    for rate, channels, fmt, code in [
        (16000, 2, pa_constants.paInt32, pa_constants.paInvalidSampleRate),
        (48000, 1, pa_constants.paInt32, pa_constants.paInvalidChannelCount),
        (48000, 2, pa_constants.paInt16, pa_constants.paSampleFormatNotSupported),
    ]:
        with pytest.raises(ValueError) as refused:
            card.is_format_supported(rate, input_device=0, input_channels=channels, input_format=fmt)
        assert refused.value.args[1] == code
    with pytest.raises(OSError) as not_opened:
        card.open(rate=48000, channels=2, format=pa_constants.paInt16, input=True, stream_callback=lambda *a: (None, 0))
    assert not_opened.value.errno == pa_constants.paSampleFormatNotSupported

    async def run() -> None:
        loop = asyncio.get_running_loop()
        capture = Capture(card_cfg(input_format="auto"), lambda _f: None, loop, pa=card)
        try:
            fmt = capture.start()  # tries int16 first, is refused, ends up at the native int32
            assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int32")
        finally:
            capture.close()
        forced = Capture(card_cfg(input_format="int16"), lambda _f: None, loop, pa=card)
        with pytest.raises(AudioDeviceError, match=f'microphone "{MIC_NAME}" accepts none.*audio.input_format'):
            forced.start()

    asyncio.run(run())
    card.terminate()


def test_constants_are_pyaudios() -> None:
    import pyaudio
    names = [n for n in dir(pa_constants) if n.startswith("pa") and isinstance(getattr(pa_constants, n), int)]
    assert len(names) > 20
    assert {n: getattr(pa_constants, n) for n in names} == {n: getattr(pyaudio, n) for n in names}


# ---------------------------------------------------------------------------------------------- lifecycle


def test_one_stream_per_device_and_close_leaves_no_threads() -> None:
    card = VirtualCard(speed=SPEED)
    heard = threading.Event()

    def listen(in_data: bytes | None, frames: int, _t: object, status: int) -> tuple[None, int]:
        assert in_data is not None and len(in_data) == frames * 2 * 4 and status == 0
        heard.set()
        return None, pa_constants.paContinue

    stream = card.open(rate=48000, channels=2, format=pa_constants.paInt32, input=True, stream_callback=listen)
    assert heard.wait(TIMEOUT_S) and stream.is_active()
    with pytest.raises(OSError) as busy:
        card.open(rate=48000, channels=2, format=pa_constants.paInt32, input=True, stream_callback=listen)
    assert busy.value.errno == pa_constants.paDeviceUnavailable

    ended = threading.Event()

    def short_block(_in: bytes | None, frames: int, _t: object, _s: int) -> tuple[bytes, int]:
        ended.set()
        return b"\x01\x00" * frames, pa_constants.paContinue  # half a stereo block: PyAudio ends the stream

    speaker = card.open(rate=48000, channels=2, format=pa_constants.paInt16, output=True, stream_callback=short_block)
    assert ended.wait(TIMEOUT_S)
    speaker.stop_stream()
    assert not speaker.is_active()
    played = card.recorded()
    assert played.shape == (960, 2) and played[:480].min() == 1 and not played[480:].any()

    card.terminate()
    assert not [t for t in threading.enumerate() if t.name.startswith("virtual-")]
    with pytest.raises(OSError):
        stream.is_active()
    stream.close()  # idempotent
    assert card.recorded().shape == (960, 2)  # the recording outlives the streams


def test_a_raising_callback_stops_its_stream() -> None:
    card = VirtualCard(speed=SPEED)
    called = threading.Event()

    def broken(*_args: object) -> tuple[None, int]:
        called.set()
        raise RuntimeError("boom")

    stream = card.open(rate=48000, channels=2, format=pa_constants.paInt32, input=True, stream_callback=broken)
    assert called.wait(TIMEOUT_S)
    stream.stop_stream()
    assert isinstance(stream.callback_error, RuntimeError) and card.input_frames_delivered == 0
    card.terminate()


def test_queue_input_refuses_what_the_mic_cannot_deliver() -> None:
    card = VirtualCard(max_queued_s=1.0)
    with pytest.raises(ValueError, match=r"2 channel\(s\); queue an array of shape \(n, 2\)"):
        card.queue_input(np.zeros((10, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="exceed the virtual mic's int32 range"):
        card.queue_input(np.full(10, 2**40, dtype=np.int64))
    with pytest.raises(ValueError, match="at most 1 s of queued audio"):
        card.queue_input(np.zeros(48001))
    assert card.wait_input_drained(0)  # nothing was queued by the refused calls
    assert card.queue_input(np.zeros(24000)) == 0.5 and not card.wait_input_drained(0)


# ---------------------------------------------------------------------------------------------- plugging


def counting_mic(count: list[int]) -> Callable[..., tuple[None, int]]:
    def listen(*_args: object) -> tuple[None, int]:
        count[0] += 1
        return None, pa_constants.paContinue

    return listen


def wait_for_count(count: list[int], at_least: int) -> None:
    """Poll a counter the card's thread bumps, with a deadline."""
    deadline = time.monotonic() + TIMEOUT_S
    while count[0] < at_least:
        assert time.monotonic() < deadline, f"only {count[0]} callbacks"
        time.sleep(0.005)


def open_mic(pa: object, index: int, count: list[int]) -> VirtualStream:
    return pa.open(rate=48000, channels=2, format=pa_constants.paInt32, input=True, input_device_index=index,
                   stream_callback=counting_mic(count))  # type: ignore[attr-defined]


def test_an_unplugged_device_leaves_the_listing_silences_its_stream_and_returns_at_a_new_index() -> None:
    card = VirtualCard(speed=SPEED)
    count = [0]
    stream = open_mic(card, 0, count)
    wait_for_count(count, 3)

    card.unplug(MIC_NAME)
    assert not card.is_plugged(MIC_NAME) and not stream.is_active() and not stream.is_stopped()
    stopped_at = count[0]
    assert [card.get_device_info_by_index(i)["name"] for i in range(card.get_device_count())] == [SPEAKER_NAME]
    with pytest.raises(OSError):
        card.get_default_input_device_info()
    with pytest.raises(OSError):
        stream.start_stream()  # a lost stream does not come back: it is closed, and the device reopened
    stream.close()
    with pytest.raises(ValueError, match="not plugged in"):
        card.unplug(MIC_NAME)

    card.plug(MIC_NAME)
    assert card.mic.index == 1 and card.get_default_input_device_info()["index"] == 1
    with pytest.raises(ValueError, match="plugged in already"):
        card.plug(MIC_NAME)
    with pytest.raises(ValueError, match="no device"):
        card.plug("usb-headset")
    assert count[0] == stopped_at  # not one callback while it was out
    again = open_mic(card, 1, count)
    wait_for_count(count, stopped_at + 3)
    again.close()
    card.terminate()


def test_views_list_devices_as_portaudio_does_until_every_instance_is_gone() -> None:
    card = VirtualCard(speed=SPEED)
    first = card.portaudio()
    card.unplug(MIC_NAME)
    second = card.portaudio()  # PortAudio is still initialised: the same list as the first
    assert [second.get_device_info_by_index(i)["name"] for i in range(second.get_device_count())] == [
        MIC_NAME, SPEAKER_NAME]
    card.plug(MIC_NAME)  # back, at a new address the old list does not know
    for view in (first, second):
        with pytest.raises(OSError) as refused:
            open_mic(view, 0, [0])
        assert refused.value.errno == pa_constants.paUnanticipatedHostError
        with pytest.raises(ValueError):
            view.is_format_supported(48000, input_device=0, input_channels=2, input_format=pa_constants.paInt32)
    speaker = second.open(rate=48000, channels=2, format=pa_constants.paInt16, output=True, output_device_index=1,
                          stream_callback=lambda _i, n, _t, _s: (bytes(n * 4), pa_constants.paContinue))
    assert card.cards() == {f"{SPEAKER_NAME}: plugged in #0", f"{MIC_NAME}: plugged in #1"}

    first.terminate()
    third = card.portaudio()  # the second is still alive: still the old list
    assert third.get_device_info_by_index(0)["name"] == MIC_NAME
    third.terminate()
    second.terminate()  # closes the streams it opened, as PyAudio.terminate() does
    with pytest.raises(OSError):
        speaker.is_active()
    fresh = card.portaudio()
    names = [fresh.get_device_info_by_index(i)["name"] for i in range(fresh.get_device_count())]
    assert names == [SPEAKER_NAME, MIC_NAME]
    count = [0]
    open_mic(fresh, 1, count)
    wait_for_count(count, 3)
    fresh.terminate()
    card.terminate()
    assert not [t for t in threading.enumerate() if t.name.startswith("virtual-")]


# ---------------------------------------------------------------------------------------------- no PyAudio


def test_works_where_pyaudio_cannot_be_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys, threading
        sys.modules["pyaudio"] = None  # as on a machine without PortAudio
        import numpy as np
        from appliance.audio import pa_constants as pa, virtual_card as vc
        from appliance.audio.devices import find_device, list_devices

        card = vc.VirtualCard(speed=8.0)
        mic = find_device(card, "virtual", direction="input")
        speaker = find_device(card, "default", direction="output")
        blocks, enough = [], threading.Event()

        def listen(in_data, frames, time_info, status):
            blocks.append(in_data)
            if len(blocks) >= 10:
                enough.set()
            return None, pa.paContinue

        tone = (0.25 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(960) / 48000)).astype("<i2")
        def speak(in_data, frames, time_info, status):
            return np.repeat(tone, 2).tobytes(), pa.paContinue

        card.queue_input(np.full((960, 2), 1 << 24, dtype=np.int32))
        card.open(rate=48000, channels=2, format=pa.paInt32, input=True, input_device_index=mic.index,
                  frames_per_buffer=960, stream_callback=listen)
        card.open(rate=48000, channels=2, format=pa.paInt16, output=True, output_device_index=speaker.index,
                  frames_per_buffer=960, stream_callback=speak)
        ok = enough.wait(5) and card.wait_input_drained(5) and card.wait_output_frames(9600, 5)
        card.terminate()
        seconds = card.write_output_wav(sys.argv[1])
        heard = np.frombuffer(b"".join(blocks), dtype="<i4").reshape(-1, 2)
        print(json.dumps({"ok": bool(ok), "names": [d.name for d in list_devices(card)],
                          "first": int(np.median(heard[:960])), "seconds": seconds,
                          "rest_rms": float(np.sqrt(np.mean(heard[960:].astype(float) ** 2)))}))
        """
    )
    wav_path = tmp_path / "out.wav"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", script, str(wav_path)], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["names"] == [MIC_NAME, SPEAKER_NAME]
    assert result["first"] == pytest.approx(1 << 24, rel=0.01)  # the queued block came first
    assert -70 < 20 * np.log10(result["rest_rms"] / 2**31) < -50  # then room noise
    assert result["seconds"] * SPEAKER_RATE >= 9600
    assert dbfs(read_wav(wav_path).samples) == pytest.approx(20 * np.log10(0.25 / np.sqrt(2)), abs=0.3)
