"""What `appliance audio-test` prints: only levels it measured, and advice that names commands that exist."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from appliance.audio.frames import RATE
from appliance.cli import build_parser
from appliance.commands.audio_test import SWEEP_RATE, SelfTestReport, judge, sweep
from appliance.audio.resample import resample

MIC = '"rigmic", 48000 Hz, 2 ch, int16'
SPEAKER = '"rigspeaker", 48000 Hz, 2 ch, int16, 20 ms periods, volume 70'
#: what a measurement that was not made would look like on the screen
UNMEASURED = re.compile(r"-?\binf\b|\bnan\b", re.IGNORECASE)


def reference() -> np.ndarray:
    return resample(sweep(), SWEEP_RATE, RATE)


def room(seconds: float, level: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, level, int(seconds * RATE))).astype(np.float32)


def judged(quiet: np.ndarray, heard: np.ndarray, volume: int = 70) -> SelfTestReport:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, volume=volume)
    report.noise_floor_dbfs = 20 * math.log10(float(np.sqrt(np.mean(np.square(quiet))))) if np.any(quiet) else -math.inf
    judge(report, quiet, heard, reference())
    return report


def text(report: SelfTestReport) -> str:
    return "\n".join(report.lines())


def assert_named_commands_exist(output: str) -> None:
    """Every `appliance ...` in backticks parses with the real command line (N standing for a number)."""
    named = re.findall(r"`appliance ([^`]+)`", output)
    assert named, output
    parser = build_parser()
    for words in named:
        argv = [("50" if word == "N" else word) for word in words.split()]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"audio-test advises `appliance {words}`, which is not a command")


def test_a_microphone_that_gives_digital_silence_says_so_instead_of_printing_minus_infinity() -> None:
    silence = np.zeros(int(1.0 * RATE), np.float32)
    report = judged(silence, np.zeros(int(2.5 * RATE), np.float32))

    output = text(report)
    assert not UNMEASURED.search(output), output
    lines = report.lines()
    assert lines[2] == "levels: the microphone heard nothing (every sample was 0)"
    assert lines[3] == "the microphone hears the speaker: not tested (the microphone heard nothing)"
    assert "PROBLEM: the microphone heard nothing (every sample was 0): is it muted (alsamixer" in output
    assert "or the wrong device or channel (audio.input_device, audio.input_channel" in output
    assert lines[-1] == "audio test failed"
    assert_named_commands_exist(output)


def test_a_silent_room_under_a_heard_sweep_is_not_infinitely_far_below_it() -> None:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, volume=70, noise_floor_dbfs=-math.inf,
                            input_peak_dbfs=-9.5, sweep_level_dbfs=-21.25, clipped_fraction=0.0,
                            speaker_heard=True, echo_delay_ms=42.0)
    output = text(report)
    assert not UNMEASURED.search(output), output
    assert report.lines()[2] == "noise floor digital silence, input peak -9.5 dBFS, clipped 0.00 % of samples"
    assert report.lines()[3] == ("the microphone hears the speaker: yes, at -21.2 dBFS over a digitally silent room, "
                                 "42 ms from speaker to microphone")


def test_a_sweep_level_of_minus_infinity_is_shown_as_nothing_heard() -> None:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, noise_floor_dbfs=-50.0, input_peak_dbfs=-30.0,
                            sweep_level_dbfs=-math.inf, clipped_fraction=0.0, problems=["not heard"])
    output = text(report)
    assert not UNMEASURED.search(output), output
    assert "the microphone hears the speaker: no: the microphone heard nothing while the sweep played" in output


def test_nan_levels_are_reported_as_not_measured() -> None:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, noise_floor_dbfs=math.nan,
                            input_peak_dbfs=math.nan, sweep_level_dbfs=math.nan, clipped_fraction=math.nan,
                            echo_delay_ms=math.nan, problems=["something broke"])
    output = text(report)
    assert not UNMEASURED.search(output), output
    assert report.lines()[2] == "levels: not measured (the measurement gave no number)"
    assert report.lines()[3] == "the microphone hears the speaker: not tested (the measurement gave no number)"


def test_a_nan_noise_floor_beside_a_real_peak_shows_the_peak_alone() -> None:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, noise_floor_dbfs=math.nan, input_peak_dbfs=-12.0,
                            sweep_level_dbfs=-30.0, clipped_fraction=0.0, problems=["not heard"])
    output = text(report)
    assert not UNMEASURED.search(output), output
    assert report.lines()[2].startswith("noise floor not measured (the measurement gave no number), input peak -12.0")
    assert "no: the sweep came in at -30.0 dBFS (the room was not measured)" in output


def test_devices_that_did_not_open_leave_every_level_unmeasured() -> None:
    report = SelfTestReport(problems=['no input device matches "respeaker"'])
    lines = report.lines()
    assert not UNMEASURED.search("\n".join(lines))
    assert lines[:4] == [
        "microphone: not opened",
        "speaker:    not opened",
        "levels: not measured (the microphone did not open)",
        "the microphone hears the speaker: not tested (the microphone did not open)",
    ]


def test_a_microphone_that_delivers_no_audio_says_what_is_missing() -> None:
    report = SelfTestReport(input_device=MIC, output_device=SPEAKER, volume=70, problems=["no audio"])
    lines = report.lines()
    assert lines[2] == "levels: not measured (no audio came from the microphone)"
    assert lines[3] == "the microphone hears the speaker: not tested (no audio came from the microphone)"


def test_an_unheard_speaker_gets_the_margin_and_volume_advice_with_real_commands() -> None:
    quiet = room(1.0, 0.01, seed=1)
    report = judged(quiet, room(2.5, 0.01, seed=2), volume=0)

    output = text(report)
    assert not UNMEASURED.search(output), output
    assert not report.speaker_heard
    assert re.search(r"hears the speaker: no: the sweep came in -?\d+\.\d dB above the room; "
                     r"it needs to be 10 dB above the room", output), output
    problem = next(line for line in report.lines() if line.startswith("PROBLEM: the microphone does not hear"))
    assert "the sweep played at the appliance's volume 0 of 100" in problem
    assert "`appliance ctl volume N`" in problem and "alsamixer, or amixer" in problem
    assert_named_commands_exist(output)


def test_a_heard_sweep_passes_with_its_margin_over_the_room() -> None:
    quiet = room(1.0, 0.001, seed=3)
    heard = np.concatenate([room(0.4, 0.001, seed=4), reference(), room(0.6, 0.001, seed=5)]).astype(np.float32)
    report = judged(quiet, heard)

    output = text(report)
    assert report.ok, output
    assert re.search(r"hears the speaker: yes, \d+\.\d dB above the room, \d+ ms from speaker to microphone", output)
    assert output.endswith("audio test passed")
