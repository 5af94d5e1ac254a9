"""The commands as a user runs them: real subprocesses, a real emulator on loopback."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import struct
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
    assert "server heard: What can I make" in out and "turn hold answered" in out
    # the reply's transcription fragments come out as one sentence, not one word per line
    assert len(re.findall(r"reply text: ", out)) == 1 and re.search(r"reply text: \w+ \w+ \w+", out)
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


# ---------------------------------------------------------------- hostile input: one line, never a hang


def one_line(result: subprocess.CompletedProcess, stream: str = "stderr") -> str:
    text = getattr(result, stream)
    assert "Traceback" not in result.stdout + result.stderr
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    return path


@pytest.mark.parametrize("command", [["run"], ["doctor"], ["ctl", "status"]])
def test_a_fifo_as_the_config_file_is_refused_at_once(fifo, command):
    # Nobody ever writes to the FIFO: reading it would block until the timeout fails the test.
    result = appliance("--config", str(fifo), *command, timeout=30)
    assert result.returncode != 0
    stream = "stdout" if command == ["doctor"] else "stderr"
    assert f"config file {fifo} is a FIFO, not a regular file" in getattr(result, stream)
    assert "Traceback" not in result.stdout + result.stderr


HOSTILE_CONFIGS = {
    # id: (file text, or None to use the path as it is; path; what the line must say)
    "dev-zero": (None, "/dev/zero", "is a character device, not a regular file"),
    "directory": (None, "TMP", "is a directory, not a regular file"),
    "deep-nesting": ("[live]\na = " + "{b=" * 5000 + "1" + "}" * 5000 + "\n", "TMP/c.toml",
                     "nests tables or arrays too deeply"),
    "api-v1": ('[live]\napi_version = "v1"\n', "TMP/c.toml", "did you mean v1beta?"),
    "absurd-tokens": ("[live]\ncompression_trigger_tokens = 10000000000000\n", "TMP/c.toml",
                      "must be between 1 and 1048576"),
}


@pytest.mark.parametrize("case", list(HOSTILE_CONFIGS))
def test_a_hostile_config_refuses_to_start_in_one_line(tmp_path, case):
    text, where, fragment = HOSTILE_CONFIGS[case]
    path = Path(where.replace("TMP", str(tmp_path)))
    if text is not None:
        path.write_text(text)
    result = appliance("--config", str(path), "run", timeout=30)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("appliance: ") and fragment in line


def test_doctor_json_reports_a_config_that_does_not_load_as_json(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[live]\nmodle = 'x'\n")
    result = appliance("--config", str(config), "doctor", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [check["name"] for check in report["checks"]] == ["config"]
    check = report["checks"][0]
    assert check["ok"] is False and "\n" not in check["detail"]
    assert check["detail"].startswith(f"unknown key live.modle in {config}; did you mean live.model?")
    assert check["advice"]


def test_doctor_text_reports_a_config_that_does_not_load_as_a_failed_check(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[live]\nmodle = 'x'\n")
    result = appliance("--config", str(config), "doctor")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL config: unknown key live.modle")
    assert lines[-1] == "doctor: 1 of 1 checks failed: config"


def wav_with_rate(path: Path, rate: int, frames: int = 100) -> Path:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
    data = b"\x00\x00" * frames
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp: wav_with_rate(tmp / "slow.wav", 2), "sample rate 2 Hz is outside 8000..192000 Hz"),
        (lambda tmp: wav_with_rate(tmp / "fast.wav", 2**32 - 1), "is outside 8000..192000 Hz"),
        (lambda tmp: wav_with_rate(tmp / "long.wav", 8000, frames=8000 * 301),
         "longer than the 5 minutes allowed"),
    ],
    ids=["2-hz", "4-ghz", "over-5-minutes"],
)
def test_ask_refuses_a_wav_it_cannot_handle_in_one_line(tmp_path, make, fragment):
    result = appliance("ask", str(make(tmp_path)), env={"GEMINI_API_KEY": KEY}, timeout=30)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("appliance ask: ") and fragment in line


def test_ask_refuses_a_1_gib_wav_without_reading_it(tmp_path):
    path = wav_with_rate(tmp_path / "huge.wav", 16000)
    with open(path, "r+b") as handle:
        handle.truncate(1 << 30)  # sparse: nothing is written to the disk
    result = appliance("ask", str(path), env={"GEMINI_API_KEY": KEY}, timeout=30)
    assert result.returncode == 2
    assert "is larger than 64 MiB" in one_line(result)


def test_ask_refuses_a_fifo_as_the_question_at_once(fifo):
    result = appliance("ask", str(fifo), env={"GEMINI_API_KEY": KEY}, timeout=30)
    assert result.returncode == 2
    assert f"{fifo}: is a FIFO, not a regular file" in one_line(result)


def test_a_fifo_as_the_api_key_file_is_refused_at_once(fifo):
    result = appliance("--set", f"live.api_key_file={fifo}", "ask", "--text", "hi", timeout=30)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("appliance ask: live.api_key_file ") and "not a regular file" in line


def test_ask_help_states_the_limits_of_a_question_file():
    result = appliance("ask", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "8 to 192 kHz" in text and "at most 5 minutes and 64 MiB" in text
