"""Earcons: the promised level, click-free edges, and sounds that can be told apart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from appliance.audio.earcons import EARCON_NAMES, earcon

RATES = [16000, 24000, 44100, 48000]
PEAK = 10 ** (-12 / 20)


def band_spectrum(x: np.ndarray, rate: int) -> np.ndarray:
    """Energy in 1/6-octave bands from 100 Hz to 8 kHz, unit length: roughly how the ear groups pitch."""
    n = 1 << int(np.ceil(np.log2(x.size)) + 1)
    power = np.abs(np.fft.rfft(x.astype(np.float64), n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    edges = 100.0 * 2 ** (np.arange(0, 6 * np.log2(80) + 1) / 6)
    bands = np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)])
    return bands / np.linalg.norm(bands)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", EARCON_NAMES)
def test_peak_is_minus_12_dbfs_and_edges_fade_from_and_to_silence(name: str, rate: int) -> None:
    x = earcon(name, rate)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-12.0, abs=0.05)
    assert 0.1 <= x.size / rate <= 1.0, "short"
    edge = max(1, rate // 1000)  # first and last millisecond
    assert abs(x[0]) < 1e-4 and abs(x[-1]) < 1e-4
    assert np.max(np.abs(x[:edge])) < 0.05 * PEAK
    assert np.max(np.abs(x[-edge:])) < 0.05 * PEAK


def test_the_five_earcons_have_distinct_spectra() -> None:
    spectra = {name: band_spectrum(earcon(name, 48000), 48000) for name in EARCON_NAMES}
    for a, b in itertools.combinations(EARCON_NAMES, 2):
        similarity = float(spectra[a] @ spectra[b])
        assert similarity < 0.5, f"{a} and {b} sound too alike (spectral similarity {similarity:.2f})"


def test_listen_start_rises_and_listen_end_falls() -> None:
    def pitch_track(x: np.ndarray, rate: int) -> tuple[float, float]:
        half = x.size // 2
        peaks = []
        for part in (x[: half // 2], x[half : half + half // 2]):
            spectrum = np.abs(np.fft.rfft(part, 1 << 15))
            peaks.append(float(np.argmax(spectrum) * rate / (1 << 15)))
        return peaks[0], peaks[1]

    first, second = pitch_track(earcon("listen_start", 48000), 48000)
    assert second > first
    first, second = pitch_track(earcon("listen_end", 48000), 48000)
    assert second < first


def test_low_rates_get_no_aliased_partials() -> None:
    rate = 8000
    for name in EARCON_NAMES:
        x = earcon(name, rate).astype(np.float64)
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.size, 1 / rate)
        # everything the synthesiser put in sits below 0.45 * rate; nothing folded back into 3.6-4 kHz
        assert power[freqs > 0.45 * rate].sum() < 1e-4 * power.sum(), name


def test_earcons_are_cached_and_read_only() -> None:
    a = earcon("alarm", 24000)
    assert earcon("alarm", 24000) is a
    with pytest.raises(ValueError):
        a[0] = 1.0


def test_unknown_names_and_bad_rates_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="listen_start"):
        earcon("beep", 48000)
    with pytest.raises(ValueError, match="rate"):
        earcon("alarm", 0)
