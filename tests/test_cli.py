"""The commands as a user runs them: real subprocesses, a real emulator on loopback."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.audio import speech, wavio
from appliance.logsetup import JournalFormatter, setup_logging

KEY = "test-key-cli-4d2b9e"
NO_HARDWARE = (
    "import sys; sys.modules['pyaudio'] = None; sys.modules['gpiozero'] = None; "
    "from appliance.cli import main; sys.exit(main(sys.argv[1:]))"
)


def appliance(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI with PyAudio and gpiozero made unimportable, as on a machine without them."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", NO_HARDWARE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def emulator_url():
    """`appliance emulator` as its own process; yields its printed URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", NO_HARDWARE, "emulator", "--pace", "0", "--scenario", "tone:0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ws://127.0.0.1:"), line
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def question_wav(path: Path, rate: int = 44100, channels: int = 2) -> Path:
    """A speech-like question as a 44.1 kHz stereo WAV, the kind a phone recording gives."""
    pcm = np.frombuffer(speech.speechlike(0.8, rate=rate), "<i2")
    frames = np.repeat(pcm[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())
    return path


def test_demo_runs_offline_without_audio_or_gpio_libraries(tmp_path):
    result = appliance("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # the whole appliance went round once: idle, listening, thinking, speaking, idle
    states = re.findall(r"state (\w+):", out)
    assert states == ["idle", "listening", "thinking", "speaking", "idle"], out
    assert re.search(r"the emulator received: setup, activityStart, \d+ x audio, activityEnd", out)
    assert "server heard: 'What can I make" in out and "turn hold answered" in out
    question = wavio.read_wav(tmp_path / "demo-question.wav")
    reply = wavio.read_wav(tmp_path / "demo-reply.wav")
    assert question.rate == 16000 and reply.rate == 48000
    # the speaker played the earcons and the echoed question: at least as long as the question
    assert len(reply.samples) / reply.rate > len(question.samples) / question.rate
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    quiet = reply.samples[int(1.0 * reply.rate) : int(2.5 * reply.rate)]  # while the user talks
    answer = reply.samples[-int(3.0 * reply.rate) :]
    assert rms(quiet) < 0.001 and rms(answer) > 0.005


def test_ask_with_a_wav_file_writes_the_reply(tmp_path, emulator_url):
    out = tmp_path / "reply.wav"
    result = appliance(
        "--set", f"live.endpoint={emulator_url}", "ask", str(question_wav(tmp_path / "q.wav")), "--out", str(out),
        env={"GEMINI_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert "you said:" in result.stdout and "reply audio:" in result.stdout
    reply = wavio.read_wav(out)
    assert reply.rate == 24000 and abs(len(reply.samples) - 12000) <= 1
    assert KEY not in result.stdout + result.stderr


def test_ask_with_text(tmp_path, emulator_url):
    result = appliance("--set", f"live.endpoint={emulator_url}", "ask", "--text", "hello", env={"GEMINI_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert "you said:   hello" in result.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a wav"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", ""),
        (b"hello, this is not audio at all", "not a WAV"),
    ],
)
def test_ask_with_a_bad_file_says_what_is_wrong_in_one_line(tmp_path, content, message):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    result = appliance("ask", str(bad), env={"GEMINI_API_KEY": KEY})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.wav" in lines[0], result.stderr
    assert message.lower() in lines[0].lower()


def test_ask_with_a_missing_file(tmp_path):
    result = appliance("ask", str(tmp_path / "nope.wav"), env={"GEMINI_API_KEY": KEY})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "nope.wav" in result.stderr


def test_ask_without_a_key_explains_where_keys_come_from(tmp_path, emulator_url):
    result = appliance("--set", f"live.endpoint={emulator_url}", "ask", "--text", "hi")
    assert result.returncode == 2
    assert "GEMINI_API_KEY" in result.stderr and "api_key_file" in result.stderr


def test_ask_with_a_rejected_key_prints_the_service_reason(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", NO_HARDWARE, "emulator", "--pace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        result = appliance(
            "--set", f"live.endpoint={url}", "--set", "live.model=gemini-2.0-flash-live-001", "ask", "--text", "hi",
            env={"GEMINI_API_KEY": KEY},
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 3
    assert "refused the session" in result.stderr and "not found" in result.stderr
    assert KEY not in result.stderr


def test_ask_against_an_unreachable_endpoint_fails_fast(tmp_path):
    url = "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    result = appliance("--set", f"live.endpoint={url}", "ask", "--text", "hi", env={"GEMINI_API_KEY": KEY}, timeout=30)
    assert result.returncode == 3
    assert "cannot reach 127.0.0.1:9" in result.stderr
    assert KEY not in result.stderr


def test_plain_ws_to_another_host_is_refused_before_any_traffic(tmp_path):
    result = appliance(
        "--set", "live.endpoint=ws://192.0.2.1:8765/ws/x", "ask", "--text", "hi", env={"GEMINI_API_KEY": KEY}
    )
    assert result.returncode == 2
    assert "live.endpoint" in result.stderr and "in clear" in result.stderr


def test_a_config_typo_refuses_to_start_with_a_suggestion(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[live]\nmodle = 'gemini-3.8-live'\n")
    result = appliance("--config", str(config), "ask", "--text", "hi")
    assert result.returncode == 2
    assert "live.modle" in result.stderr and "did you mean live.model" in result.stderr


def test_emulator_refuses_a_non_loopback_host():
    result = appliance("emulator", "--host", "0.0.0.0")
    assert result.returncode == 2 and "127.0.0.1" in result.stderr


# ---------------------------------------------------------------- logging


def test_journald_lines_carry_syslog_priorities():
    formatter = JournalFormatter()
    record = logging.LogRecord("appliance.x", logging.WARNING, __file__, 1, "line one\nline two", None, None)
    assert formatter.format(record) == "<4>appliance.x: line one\n<4>line two"
    record = logging.LogRecord("appliance.x", logging.DEBUG, __file__, 1, "quiet", None, None)
    assert formatter.format(record).startswith("<7>")


def test_log_setup_redacts_a_registered_secret():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    redactor = setup_logging("info", stream=stream)
    try:
        redactor.add("secret-value-123")
        logging.getLogger("appliance.test").warning("key is %s", "secret-value-123")
        assert "secret-value-123" not in stream.getvalue() and "[redacted]" in stream.getvalue()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
