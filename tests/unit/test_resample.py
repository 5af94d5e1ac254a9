"""Behaviour of the polyphase resampler: what a listener (or the speech recogniser) would notice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audio.resample import (
    StreamResampler,
    design_filter,
    float_to_pcm16,
    int32_to_int16,
    pcm16_to_float,
    resample,
    resample_pcm16,
    select_or_mix_channels,
)

CONVERSIONS = [(48000, 16000), (44100, 16000), (24000, 48000), (16000, 24000), (24000, 44100)]
ALL_CAPTURE_RATES = [48000, 44100, 32000, 22050, 16000, 8000]


def tone(freq: float, rate: int, seconds: float, start_s: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return np.sin(2 * np.pi * freq * (t - start_s)).astype(np.float32)


def fit_tone(y: np.ndarray, freq: float, rate: int) -> tuple[float, float]:
    """Least-squares fit of a sinusoid at exactly `freq`; returns (amplitude, rms of what is left over)."""
    t = np.arange(y.size) / rate
    basis = np.stack([np.cos(2 * np.pi * freq * t), np.sin(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    residual = y - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual**2)))


def peak_frequency(y: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak, refined by parabolic interpolation."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / y.size


def steady(y: np.ndarray, rate: int) -> np.ndarray:
    """Drop 30 ms at each end, where the signal starts and stops abruptly."""
    edge = int(0.03 * rate)
    return y[edge:-edge]


# ------------------------------------------------------------------------------------------------ frequency response


@pytest.mark.parametrize(("src", "dst"), CONVERSIONS)
def test_passband_tones_keep_amplitude_and_frequency(src: int, dst: int) -> None:
    lower_nyquist = min(src, dst) / 2
    for freq in (100.0, 440.0, 1000.0, 0.5 * lower_nyquist, 0.8 * lower_nyquist):
        y = steady(resample(tone(freq, src, 0.25), src, dst), dst)
        amplitude, leftover = fit_tone(y, freq, dst)
        assert abs(20 * np.log10(amplitude)) < 0.1, (freq, amplitude)
        assert leftover < 1e-3, (freq, leftover)  # nothing but the tone at that exact frequency
        assert peak_frequency(y, dst) == pytest.approx(freq, abs=2.0)


@pytest.mark.parametrize(
    ("src", "dst", "freq", "unwanted"),
    [
        (48000, 16000, 10000.0, 6000.0),  # 10 kHz would fold to 6 kHz
        (44100, 16000, 10000.0, 6000.0),
        (48000, 16000, 15000.0, 1000.0),
        (24000, 48000, 10000.0, 14000.0),  # upsampling: the image of 10 kHz mirrored around 12 kHz
        (16000, 24000, 7000.0, 9000.0),
        (24000, 44100, 10000.0, 14000.0),
    ],
)
def test_aliases_and_images_are_60_db_down(src: int, dst: int, freq: float, unwanted: float) -> None:
    y = steady(resample(tone(freq, src, 0.25), src, dst), dst)
    leak, _ = fit_tone(y, unwanted, dst)
    assert 20 * np.log10(leak + 1e-12) <= -60.0
    if freq > dst / 2:  # downsampling: the tone itself cannot exist at the new rate, so everything must go
        total_peak_equivalent = np.sqrt(2) * np.sqrt(np.mean(y.astype(np.float64) ** 2))
        assert 20 * np.log10(total_peak_equivalent + 1e-12) <= -60.0


@pytest.mark.parametrize("src", ALL_CAPTURE_RATES)
def test_every_capture_rate_converts_to_16k(src: int) -> None:
    y = resample(tone(1000.0, src, 0.2), src, 16000)
    assert y.size == round(0.2 * 16000)
    amplitude, leftover = fit_tone(steady(y, 16000), 1000.0, 16000)
    assert abs(20 * np.log10(amplitude)) < 0.1 and leftover < 1e-3


# ------------------------------------------------------------------------------------------------ timing


@pytest.mark.parametrize(("src", "dst"), CONVERSIONS)
def test_tone_burst_stays_time_aligned(src: int, dst: int) -> None:
    start_s = 0.5
    x = tone(1000.0, src, 1.0, start_s=start_s)
    x[: int(start_s * src)] = 0.0
    y = resample(x, src, dst)
    assert y.size == dst

    onset_in = np.argmax(np.abs(x) > 0.25) / src
    onset_out = np.argmax(np.abs(y) > 0.25) / dst
    assert abs(onset_out - onset_in) < 1e-3
    # Sub-sample alignment: after the onset transient the output is the ideal tone sampled at the new rate.
    ideal = tone(1000.0, dst, 1.0, start_s=start_s)
    settled = slice(int(0.52 * dst), int(0.98 * dst))
    assert np.max(np.abs(y[settled] - ideal[settled])) < 1e-3


@pytest.mark.parametrize(
    ("src", "dst"),
    [*CONVERSIONS, (8000, 44100), (44100, 48000), (11025, 16000), (6400, 6700), (6700, 6400)],
)
def test_matches_the_textbook_definition(src: int, dst: int) -> None:
    """Zero-stuff by `up`, low-pass with the prototype, keep every `down`-th sample, undo the delay.

    Written as a dense matrix over the input samples: output n at upsampled time t = (n + delay) * down
    is sum_i x[i] * h[t - i * up], since only every `up`-th sample of the stuffed signal is non-zero.
    """
    x = np.random.default_rng(src + dst).uniform(-1, 1, 300)
    rs = StreamResampler(src, dst)
    h = design_filter(rs.up, rs.down)
    t = (np.arange(round(x.size * rs.up / rs.down)) + rs.latency_samples) * rs.down
    taps = t[:, np.newaxis] - rs.up * np.arange(x.size)[np.newaxis, :]
    inside = (taps >= 0) & (taps < h.size)
    expected = np.where(inside, h[np.clip(taps, 0, h.size - 1)], 0.0) @ x
    np.testing.assert_allclose(resample(x.astype(np.float32), src, dst), expected, atol=2e-6)


@pytest.mark.parametrize(("src", "dst"), CONVERSIONS)
def test_output_length_is_rounded_ratio(src: int, dst: int) -> None:
    for n in (1, 2, 3, 7, 160, 441, 1001):
        assert resample(np.zeros(n, dtype=np.float32), src, dst).size == round(n * dst / src)


def test_streaming_output_lags_by_the_reported_latency() -> None:
    rs = StreamResampler(48000, 16000)
    assert rs.latency_samples > 0
    out = rs.process(np.zeros(4800, dtype=np.float32))
    assert out.size == 1600 - rs.latency_samples
    assert out.size + rs.flush().size == 1600


# ------------------------------------------------------------------------------------------------ streaming


@settings(max_examples=40, deadline=None)
@given(
    conversion=st.sampled_from(CONVERSIONS + [(8000, 16000), (22050, 16000), (6400, 6700)]),
    chunks=st.lists(st.integers(min_value=0, max_value=900), min_size=1, max_size=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    as_int16=st.booleans(),
)
def test_chunked_streaming_equals_one_shot(
    conversion: tuple[int, int], chunks: list[int], seed: int, as_int16: bool
) -> None:
    src, dst = conversion
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=sum(chunks)).astype(np.float32)
    if as_int16:
        x = (x * 30000).astype(np.int16)
    rs = StreamResampler(src, dst)
    pieces, pos = [], 0
    for size in chunks:
        piece = rs.process(x[pos : pos + size])
        assert piece.dtype == x.dtype
        pieces.append(piece)
        pos += size
    pieces.append(rs.flush())
    streamed = np.concatenate(pieces)
    whole = resample(x, src, dst)
    assert streamed.dtype == whole.dtype == x.dtype
    assert streamed.size == whole.size == round(x.size * dst / src)
    tolerance = 1 if as_int16 else 1e-5  # float rounding may flip an int16 result by one step
    np.testing.assert_allclose(streamed.astype(np.float64), whole.astype(np.float64), rtol=0, atol=tolerance)


def test_single_sample_chunks_equal_one_shot() -> None:
    x = tone(3000.0, 44100, 0.02)
    rs = StreamResampler(44100, 16000)
    streamed = np.concatenate([rs.process(x[i : i + 1]) for i in range(x.size)] + [rs.flush()])
    np.testing.assert_allclose(streamed, resample(x, 44100, 16000), atol=1e-5)


def test_history_stays_bounded_on_a_long_stream() -> None:
    rs = StreamResampler(44100, 16000)
    chunk = np.zeros(882, dtype=np.int16)
    sizes = []
    for _ in range(500):  # 10 s
        rs.process(chunk)
        sizes.append(rs.buffered_input_samples)
    assert max(sizes) <= 2 * rs.taps_per_phase + 441
    assert max(sizes[-100:]) == max(sizes[:100])


def test_flush_resets_for_a_new_stream_and_reset_discards_history() -> None:
    x = tone(700.0, 24000, 0.05)
    rs = StreamResampler(24000, 16000)
    first = np.concatenate([rs.process(x), rs.flush()])
    second = np.concatenate([rs.process(x), rs.flush()])
    np.testing.assert_array_equal(first, second)
    rs.process(np.ones(1000, dtype=np.float32))
    rs.reset()
    third = np.concatenate([rs.process(x), rs.flush()])
    np.testing.assert_array_equal(first, third)


# ------------------------------------------------------------------------------------------------ dtypes and edges


def test_int16_full_scale_saturates_instead_of_wrapping() -> None:
    square = np.where(tone(200.0, 48000, 0.1) >= 0, 32767, -32768).astype(np.int16)
    as_float = resample(square.astype(np.float32), 48000, 16000)
    assert as_float.max() > 32767.5 and as_float.min() < -32768.5  # the filter does overshoot full scale
    as_int = resample(square, 48000, 16000)
    assert as_int.dtype == np.int16
    expected = np.clip(np.rint(as_float), -32768, 32767)
    assert np.max(np.abs(as_int.astype(np.int64) - expected)) <= 1
    assert as_int.max() == 32767 and as_int.min() == -32768


def test_float32_in_float32_out() -> None:
    y = resample(tone(440.0, 16000, 0.1), 16000, 24000)
    assert y.dtype == np.float32


def test_empty_input() -> None:
    assert resample(np.zeros(0, dtype=np.int16), 48000, 16000).dtype == np.int16
    assert resample(np.zeros(0, dtype=np.float32), 44100, 16000).size == 0
    assert resample_pcm16(b"", 24000, 48000) == b""
    rs = StreamResampler(16000, 24000)
    assert rs.process(np.zeros(0, dtype=np.int16)).size == 0
    assert rs.flush().size == 0


def test_equal_rates_are_an_exact_copy() -> None:
    x = (np.arange(-500, 500) * 30).astype(np.int16)
    y = resample(x, 16000, 16000)
    np.testing.assert_array_equal(x, y)
    y[0] = 1
    assert x[0] != 1  # a copy, not a view
    rs = StreamResampler(24000, 24000)
    assert rs.latency_samples == 0
    np.testing.assert_array_equal(rs.process(x[:10]), x[:10])
    assert rs.flush().size == 0
    pcm = x.tobytes()
    assert resample_pcm16(pcm, 16000, 16000) == pcm


def test_resample_pcm16_round_trips_bytes() -> None:
    samples = (tone(440.0, 48000, 0.2) * 20000).astype("<i2")
    out = np.frombuffer(resample_pcm16(samples.tobytes(), 48000, 16000), dtype="<i2")
    assert out.size == 3200
    amplitude, _ = fit_tone(steady(out.astype(np.float64), 16000), 440.0, 16000)
    assert amplitude == pytest.approx(20000, rel=0.002)


def test_resample_pcm16_rejects_odd_byte_count() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        resample_pcm16(b"\x00\x01\x02", 48000, 16000)


@pytest.mark.parametrize("bad_rate", [0, -16000, 16000.5, "16000", True])
def test_bad_rates_are_rejected(bad_rate: object) -> None:
    with pytest.raises(ValueError, match="sample rate"):
        StreamResampler(bad_rate, 16000)  # type: ignore[arg-type]


def test_multichannel_input_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValueError, match="select_or_mix_channels"):
        resample(np.zeros((10, 2), dtype=np.int16), 48000, 16000)


def test_design_filter_is_cached_linear_phase_with_unity_dc_gain() -> None:
    h = design_filter(160, 441)
    assert design_filter(320, 882) is h  # same reduced ratio, same cached design
    assert h.size % 160 == 0
    support = h[: np.flatnonzero(h)[-1] + 1]
    np.testing.assert_allclose(support, support[::-1], atol=1e-12)
    assert h.sum() == pytest.approx(160.0)
    for phase in range(160):  # every output phase passes DC unchanged: no ripple on a constant signal
        assert h[phase::160].sum() == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------------------------ helpers


def test_pcm16_float_round_trip_and_clipping() -> None:
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2").tobytes()
    floats = pcm16_to_float(pcm)
    assert floats.dtype == np.float32 and floats.min() == -1.0 and floats.max() < 1.0
    assert float_to_pcm16(floats) == pcm
    clipped = np.frombuffer(float_to_pcm16(np.array([1.5, -1.5, 1.0, 0.49 / 32768])), dtype="<i2")
    np.testing.assert_array_equal(clipped, [32767, -32768, 32767, 0])


def test_int32_to_int16_rounds_and_clips() -> None:
    x = np.array([0, 0x8000, 0x7FFF, -0x8000, 0x10000, 0x7FFF0000, 0x7FFFFFFF, -(2**31)], dtype=np.int32)
    np.testing.assert_array_equal(int32_to_int16(x), [0, 1, 0, 0, 1, 32767, 32767, -32768])
    assert int32_to_int16(x).dtype == np.int16


def test_select_or_mix_channels() -> None:
    frames = np.array([[32767, 32767], [-32768, -32768], [1000, -1000], [3, 0]], dtype=np.int16)
    np.testing.assert_array_equal(select_or_mix_channels(frames, 0), frames[:, 0])
    np.testing.assert_array_equal(select_or_mix_channels(frames, 1), frames[:, 1])
    mixed = select_or_mix_channels(frames, None)
    assert mixed.dtype == np.int16
    np.testing.assert_array_equal(mixed, [32767, -32768, 0, 2])  # no overflow at full scale
    floats = np.array([[0.5, -0.5, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(select_or_mix_channels(floats, None), [1.0 / 3.0])
    with pytest.raises(ValueError, match="channel 2 does not exist"):
        select_or_mix_channels(frames, 2)
