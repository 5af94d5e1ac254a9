"""The jitter buffer as a listener hears it: when playback starts, no clicks, nothing lost, flush is final."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audio.jitter import JitterBuffer, JitterEvents

RATE = 48000
FADE = RATE * 5 // 1000  # 240 samples
BLOCK = 960  # one 20 ms device period


def ms(n: float) -> int:
    return int(round(RATE * n / 1000))


def sine(n: int, freq: float = 1000.0, amp: float = 0.5, start: int = 0, phase: float = 0.0) -> np.ndarray:
    t = (np.arange(n) + start) / RATE
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def positive_signal(n: int, start: int = 0) -> np.ndarray:
    """Never zero (0.1 .. 0.7), so 'non-silent output' marks exactly the samples that were played."""
    return 0.4 + sine(n, 700.0, 0.3, start)


def as_stored(x: np.ndarray) -> np.ndarray:
    """What the buffer gives back for `x` at full gain (it stores int16)."""
    return (np.clip(np.rint(x * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def drain(jb: JitterBuffer, blocks: int, n: int = BLOCK) -> np.ndarray:
    return np.concatenate([jb.pull(n) for _ in range(blocks)])


def own_max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x))))


def max_step_near(out: np.ndarray, index: int, radius: int = 3 * FADE) -> float:
    lo, hi = max(0, index - radius), min(out.size, index + radius)
    # include the step from the sample before the window (a cut from full level to 0 is a step too)
    return float(np.max(np.abs(np.diff(out[lo:hi]))))


def test_playback_waits_for_the_start_target_then_starts_with_a_fade_in() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    signal = sine(ms(400))
    jb.push(signal[: ms(100)])
    assert not np.any(drain(jb, 5)), "100 ms is below the 120 ms start target: silence"
    assert jb.take_events() == 0
    jb.push(signal[ms(100) : ms(130)])
    out = jb.pull(BLOCK)
    assert np.any(out)
    assert jb.take_events() & JitterEvents.FIRST_AUDIO
    # the first samples ramp up from nothing instead of jumping in at the signal's level
    assert np.max(np.abs(out[:20])) < 0.1 * np.max(np.abs(signal))
    np.testing.assert_allclose(out[FADE:], as_stored(signal[FADE:BLOCK]), atol=1e-6)


def test_a_complete_short_reply_plays_at_once_and_entirely() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    reply = positive_signal(ms(50))
    jb.push(reply)
    assert not np.any(jb.pull(BLOCK)), "50 ms, reply not complete yet: wait"
    jb.end_of_reply()
    out = drain(jb, 6)
    played = np.flatnonzero(out)
    assert played.size == reply.size, "every sample of the short reply is played, none twice"
    assert played[-1] - played[0] + 1 == reply.size, "without gaps"
    middle = slice(played[0] + FADE, played[-1] - FADE)
    np.testing.assert_allclose(out[middle], as_stored(reply)[FADE:-FADE - 1], atol=1e-6)
    # and it ends with a fade, not a step down from 0.4
    assert out[played[-1]] < 0.01
    events = jb.take_events()
    assert events & JitterEvents.FIRST_AUDIO and events & JitterEvents.DRAINED
    assert jb.underruns == 0, "a complete reply running out is not an underrun"


def test_underrun_mid_reply_pauses_with_fades_grows_the_target_and_loses_nothing() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    total = ms(600)
    signal = sine(total, 1000.0, 0.5, phase=0.3)  # never exactly 0, so silence marks the pauses
    jb.push(signal[: ms(200)])
    out = [drain(jb, 12)]  # 240 ms of pulls: the 200 ms run dry mid-reply
    assert jb.underruns == 1
    assert jb.start_target_ms == 180.0, "target grows by half after an underrun"
    # pause until the larger target is buffered: 150 ms is not enough any more
    jb.push(signal[ms(200) : ms(350)])
    out.append(drain(jb, 3))
    assert not np.any(out[-1]), "no scattered audio while waiting for the grown target"
    jb.push(signal[ms(350) :])
    jb.end_of_reply()
    out.append(drain(jb, 30))
    played = np.concatenate(out)

    audible = played[played != 0]
    assert audible.size == total, "nothing lost, nothing repeated"
    assert jb.take_events() & JitterEvents.DRAINED
    # no click where playback paused and resumed: steps stay within the signal's own
    silent_runs = np.flatnonzero(np.diff((np.abs(played) > 0).astype(int)) != 0)
    assert silent_runs.size >= 2, "there is a pause in the middle"
    bound = 1.25 * own_max_step(signal)
    for edge in silent_runs:
        assert max_step_near(played, int(edge)) <= bound
    assert np.max(np.abs(audible)) <= np.max(np.abs(signal)) + 1e-4


def test_underrun_content_is_the_signal_in_order() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    signal = positive_signal(ms(500))
    jb.push(signal[: ms(150)])
    first = drain(jb, 10)
    jb.push(signal[ms(150) :])
    jb.end_of_reply()
    rest = drain(jb, 30)
    played = np.concatenate((first, rest))
    audible = played[played != 0]
    assert audible.size == signal.size
    gains = audible / as_stored(signal)
    assert np.all(gains > 0) and np.all(gains <= 1.0 + 1e-5)
    faded = np.flatnonzero(gains < 0.999)
    # only the fade-in at the start, the fade-out/in around the pause and the final fade-out are attenuated
    assert faded.size <= 4 * FADE + 4


def test_target_growth_is_capped_at_500_ms() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    for _ in range(8):
        jb.push(sine(ms(520)))
        drain(jb, 30)
    assert jb.underruns >= 5
    assert jb.start_target_ms == 500.0


def test_flush_fades_out_at_once_and_drops_late_audio_until_new_reply() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    signal = sine(ms(1000), 830.0, 0.5, phase=1.0)  # the cut lands mid-wave, not on a zero crossing
    jb.push(signal[: ms(500)])
    before = drain(jb, 5)
    jb.flush()
    after = jb.pull(BLOCK)
    assert np.all(after[FADE:] == 0), "silent within 5 ms of the next pull"
    assert jb.take_events() & JitterEvents.SILENT_AFTER_FLUSH
    joined = np.concatenate((before, after))
    assert max_step_near(joined, before.size) <= 1.25 * own_max_step(signal), "no click at the cut"
    # late audio of the interrupted reply is dropped, even a complete one
    assert jb.push(signal[ms(500) :]) == 0
    jb.end_of_reply()
    assert not np.any(drain(jb, 10))
    assert jb.depth_samples == 0
    # a new reply plays again
    jb.new_reply()
    assert jb.push(signal[: ms(200)]) == ms(200)
    assert np.any(drain(jb, 3))


def test_flush_with_blocks_shorter_than_the_fade_still_fades() -> None:
    jb = JitterBuffer(RATE, start_ms=20)
    signal = sine(ms(300), 530.0, 0.8, phase=1.0)
    jb.push(signal)
    before = drain(jb, 40, n=32)
    jb.flush()
    after = drain(jb, 20, n=32)
    assert np.all(after[FADE:] == 0)
    joined = np.concatenate((before, after))
    assert max_step_near(joined, before.size) <= 1.25 * own_max_step(signal)


def test_flush_while_waiting_for_the_target_is_silent_at_once() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    jb.push(sine(ms(50)))
    jb.flush()
    assert not np.any(jb.pull(BLOCK))
    assert jb.take_events() == JitterEvents.SILENT_AFTER_FLUSH


def test_overflow_drops_the_oldest_audio_and_counts_it() -> None:
    jb = JitterBuffer(8000, start_ms=20, max_seconds=0.1)  # 800 samples
    ramp = (np.arange(1000, dtype=np.float32) + 1) / 2000.0
    jb.push(ramp[:600])
    jb.push(ramp[600:])
    assert jb.dropped_samples == 200
    assert jb.depth_samples == 800
    assert jb.max_depth == 800
    jb.end_of_reply()
    out = drain(jb, 2, n=500)
    played = out[out != 0]
    # the newest 800 samples remain (fades aside)
    np.testing.assert_allclose(played[40:-41], as_stored(ramp[240:-41]), atol=1e-6)
    # one push larger than the whole ring keeps its newest part
    jb.new_reply()
    jb.push(np.full(2000, 0.25, dtype=np.float32))
    assert jb.dropped_samples == 200 + 1200
    assert jb.depth_samples == 800


def test_a_new_reply_queued_behind_a_complete_one_gets_its_own_events() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    jb.push(sine(ms(200)))
    jb.end_of_reply()
    drain(jb, 2)
    assert jb.take_events() == JitterEvents.FIRST_AUDIO
    jb.new_reply()
    jb.push(sine(ms(300)))
    drain(jb, 9)  # first reply ends, second one has 300 ms >= target: it starts
    events = jb.take_events()
    assert events & JitterEvents.DRAINED and events & JitterEvents.FIRST_AUDIO
    assert jb.underruns == 0


def test_counters_report_depth() -> None:
    jb = JitterBuffer(RATE, start_ms=120)
    jb.push(sine(ms(250)))
    assert jb.depth_ms == 250.0
    stats = jb.stats()
    assert stats.depth_samples == ms(250) and stats.max_depth_samples == ms(250)
    assert stats.underruns == 0 and stats.dropped_samples == 0 and stats.start_target_ms == 120.0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 3000)),
        st.tuples(st.just("pull"), st.integers(0, 2500)),
        st.tuples(st.just("end"), st.just(0)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("new"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, rate=st.sampled_from([8000, 16000, 24000, 48000]), start_ms=st.integers(20, 600))
def test_any_sequence_of_operations_returns_what_was_asked_and_never_raises(
    ops: list[tuple[str, int]], rate: int, start_ms: int
) -> None:
    jb = JitterBuffer(rate, start_ms=start_ms, max_seconds=0.25)
    position = 0
    for op, size in ops:
        if op == "push":
            jb.push(np.full(size, 0.9, dtype=np.float32) if size % 2 else sine(size, 440.0, 0.9, position))
            position += size
        elif op == "pull":
            out = jb.pull(size)
            assert out.shape == (size,) and out.dtype == np.float32
            assert np.all(np.abs(out) <= 0.9 + 1e-4), "fades only ever attenuate"
        elif op == "end":
            jb.end_of_reply()
        elif op == "flush":
            jb.flush()
        else:
            jb.new_reply()
        assert 0 <= jb.depth_samples <= jb.capacity
        jb.take_events()
