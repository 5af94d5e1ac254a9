"""Earcons: the promised level, click-free edges, sounds that can be told apart, and an alarm that
cuts through kitchen noise without clipping or aliasing."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from appliance.audio.earcons import ALARM_PEAK_DBFS, EARCON_NAMES, PEAK_DBFS, earcon
from appliance.settings.schema import TimersConfig

RATES = [16000, 24000, 44100, 48000]
PEAK = 10 ** (-12 / 20)
ALARM_PITCHES = (2093.0, 2637.0)


def power_spectrum(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return np.fft.rfftfreq(x.size, 1 / rate), power


def share(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float) -> float:
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


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
def test_peak_is_as_promised_and_edges_fade_from_and_to_silence(name: str, rate: int) -> None:
    x = earcon(name, rate)
    assert x.dtype == np.float32 and x.ndim == 1
    promised = ALARM_PEAK_DBFS if name == "alarm" else PEAK_DBFS
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(promised, abs=0.05)
    assert 0.1 <= x.size / rate <= 1.0, "short"
    edge = max(1, rate // 1000)  # first and last millisecond
    assert abs(x[0]) < 1e-4 and abs(x[-1]) < 1e-4
    assert np.max(np.abs(x[:edge])) < 0.05 * PEAK
    assert np.max(np.abs(x[-edge:])) < 0.05 * PEAK


def test_the_alarm_peaks_below_full_scale_and_the_others_leave_room_for_speech() -> None:
    assert PEAK_DBFS == -12.0
    assert -3.0 <= ALARM_PEAK_DBFS < 0.0, "loud, yet a ring at full level never reaches 1.0 and clips"


@pytest.mark.parametrize("rate", [24000, 48000])
def test_the_alarm_sits_at_2_to_4_khz_above_kitchen_noise(rate: int) -> None:
    freqs, power = power_spectrum(earcon("alarm", rate), rate)
    assert share(freqs, power, 0, 1000) < 0.001, "fans and running water would mask energy below 1 kHz"
    assert share(freqs, power, 1900, 4100) > 0.6, "most of it where hearing is keenest"
    assert share(freqs, power, 4100, rate / 2) > 0.1, "harmonic-rich, not a bare sine"


def test_the_alarm_does_not_alias_at_24_khz() -> None:
    """Every bit of energy lies on a harmonic of the two pitches, under 0.45x the rate: nothing folded back."""
    rate = 24000
    freqs, power = power_spectrum(earcon("alarm", rate), rate)
    harmonics = [f * k for f in ALARM_PITCHES for k in range(1, 10) if f * k < rate / 2]
    near = np.zeros(freqs.size, dtype=bool)
    for h in harmonics:
        near |= np.abs(freqs - h) < 150.0  # the pulses' 4-6 ms edges spread each partial a little
    assert power[~near].sum() < 1e-3 * power.sum()
    assert share(freqs, power, 0.45 * rate, rate / 2) < 1e-4


@pytest.mark.parametrize("rate", RATES)
def test_a_ring_ends_before_the_next_can_start_so_rings_never_overlap_and_clip(rate: int) -> None:
    quickest = next(f.metadata["min"] for f in dataclasses.fields(TimersConfig) if f.name == "ring_interval_s")
    assert earcon("alarm", rate).size / rate <= quickest


def test_the_alarm_is_pulsed() -> None:
    """Beeps with gaps stand out from steady noise: four pulses, each with a clear silence after it."""
    rate = 48000
    loud = np.abs(earcon("alarm", rate)) > 0.05
    window = rate // 200  # 5 ms: bridges the waveform's own zero crossings, not the gaps
    on = np.convolve(loud, np.ones(window), "same") > 0
    starts = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int)])) == 1)
    assert starts.size == 4
    assert 0.5 < np.mean(on) < 0.95, "pulses with gaps, not one long tone"


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
