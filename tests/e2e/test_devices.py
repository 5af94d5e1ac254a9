"""Choosing the microphone and speaker by name, and a format the device accepts (real PyAudio over ALSA file PCMs)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio.devices import (
    AudioDeviceError,
    choose_input_format,
    devices_report,
    find_device,
    list_devices,
    open_pyaudio,
    pa_sample_format,
    probe_rates,
)
from appliance.settings.schema import AudioConfig
from tests.rigs import ALSA_CONF, FileRig

RIG_NAMES = ["rigmic_raw", "rigmic", "rigmono_raw", "rigmono"]


def activate_rig(rig: FileRig, monkeypatch: pytest.MonkeyPatch, *, default_capture: str | None = None) -> None:
    """Point alsa-lib at the rig; optionally define `pcm.!default` (FileRig has no helper for it)."""
    text = rig.config_path.read_text()
    if default_capture is not None:
        text += f'pcm.!default {{ type asym; capture.pcm "{default_capture}"; playback.pcm "null" }}\n'
    path = rig.root / "asoundrc-with-default"
    path.write_text(text)
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"{ALSA_CONF}:{path}")


def make_rig(tmp_path: Path) -> FileRig:
    rig = FileRig(tmp_path)
    rig.add_capture("rigmic", np.zeros((4800, 2), np.int32), rate=48000, fmt="S32_LE")
    rig.add_capture("rigmono", np.zeros((1600, 1), np.int16), rate=16000, fmt="S16_LE")
    return rig


@pytest.fixture
def pa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    activate_rig(make_rig(tmp_path), monkeypatch)
    instance = open_pyaudio()
    yield instance
    instance.terminate()


def audio(**changes: Any) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **changes)


def named(pa: Any, name: str) -> Any:
    return next(d for d in list_devices(pa) if d.name == name)


class MockFormatLimits:
    """A mock of our own, used only because the file rig accepts every format and so can never refuse one.

    It is the real PyAudio, except that `is_format_supported` on one device accepts only the given
    (rate, channels, format name) combinations and records every question asked, like a real I2S
    HAT that does S32_LE 48 kHz stereo and nothing else.
    """

    def __init__(self, pa: Any, device_index: int, allowed: set[tuple[int, int, str]]) -> None:
        self._pa = pa
        self._index = device_index
        self._allowed = {(rate, channels, pa_sample_format(fmt)) for rate, channels, fmt in allowed}
        self.asked: list[tuple[int, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pa, name)

    def is_format_supported(self, rate: float, **kwargs: Any) -> bool:
        device = kwargs.get("input_device", kwargs.get("output_device"))
        if device == self._index:
            channels = kwargs.get("input_channels", kwargs.get("output_channels"))
            fmt = kwargs.get("input_format", kwargs.get("output_format"))
            self.asked.append((int(rate), channels, fmt))
            if (int(rate), channels, fmt) not in self._allowed:
                raise ValueError("Invalid sample format")  # what PyAudio raises for a refused format
        return self._pa.is_format_supported(rate, **kwargs)


# ------------------------------------------------------------------------------------------------ open_pyaudio


def test_open_pyaudio_keeps_alsa_noise_out_of_the_log(tmp_path: Path) -> None:
    """alsa-lib prints dozens of lines while PortAudio probes PCMs that cannot open; the owner's log stays clean."""
    config = tmp_path / "asoundrc"
    config.write_text("pcm.missingcard { type hw; card 7 }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{config}"}

    def stderr_of(code: str) -> str:
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        return run.stderr

    assert "ALSA lib" in stderr_of("import pyaudio; pyaudio.PyAudio().terminate()")  # the noise being removed
    quiet = stderr_of("from appliance.audio.devices import open_pyaudio; open_pyaudio().terminate()")
    assert "ALSA lib" not in quiet


def test_log_lines_written_while_portaudio_is_quieted_still_reach_the_log(tmp_path: Path) -> None:
    """fd 2 is the whole process's: another thread's log line during a quiet open must come out, the noise not."""
    config = tmp_path / "asoundrc"
    config.write_text("pcm.missingcard { type hw; card 7 }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{config}"}
    code = """if True:
        import logging, sys, threading
        import pyaudio
        from appliance.audio.devices import quiet_stderr
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        inside, logged = threading.Event(), threading.Event()

        def other() -> None:
            inside.wait(10)
            logging.warning("the conductor said something")
            logged.set()

        threading.Thread(target=other).start()
        with quiet_stderr():
            pa = pyaudio.PyAudio()  # alsa-lib's own handler is in place: it prints for the missing card
            inside.set()
            logged.wait(10)
            logging.warning("and so did this thread")
            pa.terminate()
        """
    loud = subprocess.run([sys.executable, "-c", code.replace("with quiet_stderr():", "if True:")], env=env,
                          capture_output=True, text=True, timeout=30)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert loud.returncode == 0 and quiet.returncode == 0, quiet.stderr
    assert "ALSA lib" in loud.stderr  # the noise is real
    assert "ALSA lib" not in quiet.stderr and "Cannot connect to server" not in quiet.stderr
    assert quiet.stderr.splitlines() == ["the conductor said something", "and so did this thread"]


# ------------------------------------------------------------------------------------------------ find_device


def test_list_devices_shows_the_rig_with_channels_and_default_rates(pa: Any) -> None:
    devices = {d.name: d for d in list_devices(pa)}
    assert set(RIG_NAMES) <= set(devices)
    assert devices["rigmic"].default_rate == 48000
    assert devices["rigmono"].default_rate == 16000
    assert devices["rigmic"].max_input_channels > 0
    assert devices["rigmic"].host_api == "ALSA"


def test_an_exact_name_wins_over_longer_names_containing_it(pa: Any) -> None:
    assert find_device(pa, "rigmic", direction="input").name == "rigmic"
    assert find_device(pa, "RigMono", direction="input").name == "rigmono"


def test_a_unique_substring_selects_the_device(pa: Any) -> None:
    assert find_device(pa, "mono_r", direction="input").name == "rigmono_raw"
    assert find_device(pa, "MIC_RAW", direction="output").name == "rigmic_raw"


def test_hash_index_is_a_last_resort_that_works(pa: Any) -> None:
    index = named(pa, "rigmono").index
    assert find_device(pa, f"#{index}", direction="input").name == "rigmono"


def test_default_is_the_alsa_default_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    activate_rig(make_rig(tmp_path), monkeypatch, default_capture="rigmono")
    instance = open_pyaudio()
    try:
        device = find_device(instance, "default", direction="input")
        assert device.name == "default"
        assert device.default_rate == 16000  # it is rigmono under another name
        assert device.index == instance.get_default_input_device_info()["index"]
    finally:
        instance.terminate()


def test_a_name_that_matches_nothing_says_what_exists(pa: Any) -> None:
    with pytest.raises(AudioDeviceError) as caught:
        find_device(pa, "respeaker", direction="input")
    message = str(caught.value)
    assert "\n" not in message
    assert '"respeaker"' in message
    for name in RIG_NAMES:
        assert f'"{name}"' in message
    assert "appliance devices" in message


def test_an_ambiguous_substring_lists_the_candidates(pa: Any) -> None:
    with pytest.raises(AudioDeviceError) as caught:
        find_device(pa, "mono", direction="input")
    message = str(caught.value)
    assert "\n" not in message
    assert "matches 2" in message
    assert '"rigmono_raw"' in message and '"rigmono"' in message
    assert '"rigmic"' not in message  # only the candidates, so the owner sees what to disambiguate
    assert "appliance devices" in message


def test_an_index_that_does_not_exist_is_refused(pa: Any) -> None:
    with pytest.raises(AudioDeviceError, match=r"no device #999 .*appliance devices"):
        find_device(pa, "#999", direction="input")


# ------------------------------------------------------------------------------------------------ input format


def test_auto_format_uses_the_device_rate_stereo_and_16_bit(pa: Any) -> None:
    fmt = choose_input_format(pa, named(pa, "rigmic"), audio())
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int16")
    assert fmt.frames_per_buffer == 960  # 20 ms


def test_enough_channels_are_opened_for_the_configured_channel(pa: Any) -> None:
    fmt = choose_input_format(pa, named(pa, "rigmic"), audio(input_channel=3))
    assert fmt.channels == 4


def test_explicit_rate_channels_and_format_are_honoured(pa: Any) -> None:
    cfg = audio(input_rate=44100, input_channels=1, input_format="int32")
    fmt = choose_input_format(pa, named(pa, "rigmic"), cfg)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (44100, 1, "int32")
    assert fmt.frames_per_buffer == 882


def test_an_i2s_device_that_only_does_s32_48k_stereo_is_found(pa: Any) -> None:
    device = named(pa, "rigmic_raw")  # reports a default rate of 44100, which this "HAT" refuses
    limited = MockFormatLimits(pa, device.index, {(48000, 2, "int32")})
    fmt = choose_input_format(limited, device, audio())
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int32")
    # the device's own rate was tried first, and 16-bit before 32-bit at each step
    assert limited.asked[0] == (44100, 2, pa_sample_format("int16"))
    assert limited.asked[-2:] == [(48000, 2, pa_sample_format("int16")), (48000, 2, pa_sample_format("int32"))]


def test_a_mono_16k_device_is_found_by_falling_back(pa: Any) -> None:
    device = named(pa, "rigmic")
    limited = MockFormatLimits(pa, device.index, {(16000, 1, "int16")})
    fmt = choose_input_format(limited, device, audio())
    assert (fmt.rate, fmt.channels, fmt.sample_format, fmt.frames_per_buffer) == (16000, 1, "int16", 320)


def test_an_explicit_format_the_device_refuses_is_an_error_not_a_silent_substitute(pa: Any) -> None:
    device = named(pa, "rigmic")
    limited = MockFormatLimits(pa, device.index, {(48000, 2, "int32")})
    with pytest.raises(AudioDeviceError) as caught:
        choose_input_format(limited, device, audio(input_rate=16000))
    message = str(caught.value)
    assert "\n" not in message
    assert "16000 Hz" in message and "audio.input_rate" in message


def test_nothing_accepted_names_what_was_tried(pa: Any) -> None:
    device = named(pa, "rigmic")
    limited = MockFormatLimits(pa, device.index, set())
    with pytest.raises(AudioDeviceError) as caught:
        choose_input_format(limited, device, audio())
    message = str(caught.value)
    assert "\n" not in message
    for tried in ("48000", "44100", "16000", "int16", "int32"):
        assert tried in message
    assert '"rigmic"' in message


def test_a_channel_beyond_the_opened_channels_is_refused(pa: Any) -> None:
    with pytest.raises(AudioDeviceError, match=r"input_channel is 2 but audio.input_channels is 2"):
        choose_input_format(pa, named(pa, "rigmic"), audio(input_channel=2, input_channels=2))


# ------------------------------------------------------------------------------------------------ report


def test_probe_rates_reports_what_opens(pa: Any) -> None:
    device = named(pa, "rigmic")
    assert probe_rates(pa, device, "input") == {16000: True, 24000: True, 44100: True, 48000: True}
    limited = MockFormatLimits(pa, device.index, {(48000, 2, "int32")})
    assert probe_rates(limited, device, "input") == {16000: False, 24000: False, 44100: False, 48000: True}


def test_report_marks_the_configured_devices_and_lists_rates(pa: Any) -> None:
    report = devices_report(pa, audio(input_device="rigmono", output_device="mic_raw"))
    inputs, outputs = report.split("Outputs")
    marked_inputs = [line for line in inputs.splitlines() if line.startswith(" * #")]
    marked_outputs = [line for line in outputs.splitlines() if line.startswith(" * #")]
    assert len(marked_inputs) == 1 and " rigmono " in marked_inputs[0]
    assert "default 16000 Hz" in marked_inputs[0]
    assert "16000, 24000, 44100, 48000" in marked_inputs[0]
    assert len(marked_outputs) == 1 and " rigmic_raw " in marked_outputs[0]
    assert "capture opens at 16000 Hz" in inputs
    for name in RIG_NAMES:
        assert f" {name} " in inputs and f" {name} " in outputs


def test_report_shows_refused_rates(pa: Any) -> None:
    device = named(pa, "rigmic")
    limited = MockFormatLimits(pa, device.index, {(48000, 2, "int32")})
    report = devices_report(limited, audio(input_device="rigmic"))
    line = next(line for line in report.splitlines() if line.startswith(" * #") and " rigmic " in line)
    assert "opens at 48000 (not 16000, 24000, 44100)" in line
    assert "capture opens at 48000 Hz, 2 ch, int32" in report


def test_report_says_when_the_configured_device_matches_nothing(pa: Any) -> None:
    report = devices_report(pa, audio(input_device="respeaker"))
    inputs = report.split("Outputs")[0]
    assert not any(line.startswith(" * #") for line in inputs.splitlines())
    assert 'audio.input_device "respeaker" matches nothing' in inputs


# ------------------------------------------------------------------------------------------------ the command


def run_appliance(tmp_path: Path, command: str, *settings: str) -> subprocess.CompletedProcess[str]:
    """`appliance COMMAND` as a person runs it, on the file rig, with an empty config and these --set values."""
    rig = make_rig(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    env.update(rig.env())
    argv = [sys.executable, "-m", "appliance", "--config", str(config), "--set", f"state.dir={tmp_path / 'state'}"]
    for setting in settings:
        argv += ["--set", setting]
    return subprocess.run(argv + [command], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def run_devices(tmp_path: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    return run_appliance(tmp_path, "devices", *settings)


def verdict_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("   audio.")]


def test_the_command_fails_when_the_configured_microphone_matches_nothing(tmp_path: Path) -> None:
    run = run_devices(tmp_path, "audio.input_device=respeaker", "audio.output_device=rigmic_raw")
    assert run.returncode == 1, run.stdout + run.stderr
    assert verdict_lines(run.stdout) == [
        '   audio.input_device "respeaker" matches nothing: no input device matches "respeaker"; '
        'inputs: "rigmic_raw", "rigmic", "rigmono_raw", "rigmono"; '
        "set audio.input_device to one of them or part of a name"
    ]
    assert "appliance devices" not in run.stdout  # it never tells you to run what you are reading


def test_the_command_fails_when_the_speaker_name_is_ambiguous(tmp_path: Path) -> None:
    run = run_devices(tmp_path, "audio.input_device=rigmono", "audio.output_device=mic")
    assert run.returncode == 1, run.stdout + run.stderr
    [line] = verdict_lines(run.stdout)
    assert line.startswith('   audio.output_device "mic" selects no device: "mic" matches 2 output devices: ')
    assert "appliance devices" not in run.stdout


def test_the_command_succeeds_when_both_settings_select_a_device(tmp_path: Path) -> None:
    run = run_devices(tmp_path, "audio.input_device=rigmono", "audio.output_device=rigmic_raw")
    assert run.returncode == 0, run.stdout + run.stderr
    assert verdict_lines(run.stdout) == []
    assert 'audio.input_device "rigmono" selects #' in run.stdout


def test_the_command_escapes_a_setting_that_carries_terminal_controls(tmp_path: Path) -> None:
    run = run_devices(tmp_path, "audio.input_device=res\x1b[2Jpeaker", "audio.output_device=rigmic_raw")
    assert run.returncode == 1
    assert "\x1b" not in run.stdout
    assert '"res\\x1b[2Jpeaker" matches nothing' in run.stdout


# ------------------------------------------------------------------------------------------------ audio-test


def test_audio_test_on_a_silent_microphone_says_it_heard_nothing_instead_of_minus_infinity(tmp_path: Path) -> None:
    """The rig's microphones give digital silence: there is no noise floor or margin to print, only what is missing."""
    run = run_appliance(tmp_path, "audio-test", "audio.input_device=rigmic", "audio.output_device=rigmic_raw")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "inf" not in run.stdout and "nan" not in run.stdout.lower()
    lines = run.stdout.splitlines()
    assert lines[0].startswith('microphone: "rigmic", ')
    assert lines[1].startswith('speaker:    "rigmic_raw", ') and lines[1].endswith(", volume 70")
    assert lines[2:4] == [
        "levels: the microphone heard nothing (every sample was 0)",
        "the microphone hears the speaker: not tested (the microphone heard nothing)",
    ]
    assert lines[4].startswith("PROBLEM: the microphone heard nothing (every sample was 0): is it muted (alsamixer")
    assert lines[-1] == "audio test failed"
