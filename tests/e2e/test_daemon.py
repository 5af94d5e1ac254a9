"""The appliance end to end: gpiozero's MockFactory for the button and LED, a private
PulseAudio for the microphone and speaker (paced in real time), the emulator for the
Live API.  In-process for the fine detail, and as a real `appliance run` subprocess
driven by `appliance ctl`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest

from appliance.audio import speech
from appliance.audio.frames import RATE
from appliance.app.conductor import State
from appliance.ipc.client import request
from appliance.app.daemon import Daemon
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from harness import BUTTON_PIN, KEY, LED_PIN, Running, config_for, eventually, speak

QUESTION = "What is a good temperature for roasting vegetables?"


@pytest.fixture(scope="module")
def question() -> bytes:
    pcm = speech.spoken(QUESTION, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    return pcm


def test_hold_to_talk_with_the_gpio_button(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.7), Scenario(reply="echo", transcript=QUESTION)) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                button = gpio.pin(BUTTON_PIN)
                led = gpio.pin(LED_PIN)
                assert led.state == 0  # idle: off
                recording = tmp_path / "speaker.raw"
                pulse.start_recording_speaker(recording, rate=24000)
                mark = conductor.seq
                button.drive_low()  # pressed (pull-up wiring)
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                await eventually(lambda: led.state == 1.0, 5, "the listening LED")
                await speak(pulse, question)
                button.drive_high()
                thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
                speaking = await conductor.wait_state(State.SPEAKING, 10, since=thinking)
                await conductor.wait_state(State.IDLE, 20, since=speaking)
                pulse.stop_recording_speaker()
                status = await request(daemon.control_path, "status")
            return emu, conductor, status, recording

    emu, conductor, status, recording = asyncio.run(scenario())
    # the echoed question came out of the speaker: it correlates with what was sent
    played = np.frombuffer(recording.read_bytes(), "<i2").astype(np.float64)
    sent = np.frombuffer(bytes(emu.turns[0].reply_pcm), "<i2").astype(np.float64)
    corr = np.correlate(played, sent[: 24000 * 2], mode="valid")
    best = np.max(np.abs(corr)) / (np.linalg.norm(sent[: 24000 * 2]) * np.sqrt(
        np.max(np.convolve(played**2, np.ones(48000), mode="valid"))) + 1e-9)
    assert best > 0.8
    heard = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    assert len(question) / 2 / RATE <= len(heard) / RATE <= len(question) / 2 / RATE + 1.5
    kinds = [next(iter(r.message["realtimeInput"])) for r in emu.received if r.kind == "realtimeInput"]
    assert kinds[0] == "activityStart" and kinds[-1] == "activityEnd" and "audio" in kinds
    turn = conductor.turns[-1]
    assert turn.outcome == "answered" and turn.mode == "hold" and turn.submitted
    assert turn.end_to_first_audio_ms is not None and turn.first_audio_to_device_ms is not None
    assert status["ok"] and status["state"] == "idle" and status["turns"][-1]["outcome"] == "answered"


def test_tap_barge_in_and_a_new_turn_through_ctl(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)
    recording = tmp_path / "speaker.raw"

    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.0), Scenario(reply="tone", tone_seconds=6.0)) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                sock = daemon.control_path
                mark = conductor.seq
                assert (await request(sock, "tap"))["ok"]
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                await speak(pulse, question)  # a tap: the turn ends on silence by itself
                speaking = await conductor.wait_state(State.SPEAKING, 15, since=mark)
                pulse.start_recording_speaker(recording)
                await asyncio.sleep(0.5)  # let half a second of the reply play
                assert (await request(sock, "press"))["ok"]  # barge-in
                await conductor.wait_state(State.LISTENING, 5, since=speaking)
                await speak(pulse, question)
                # the service is interrupted once the user really speaks
                await emu.wait_for(lambda e: e.turns and e.turns[0].interrupted, 5)
                assert (await request(sock, "release"))["ok"]
                second = await conductor.wait_state(State.SPEAKING, 15, since=speaking + 1)
                assert (await request(sock, "stop"))["ok"]
                await conductor.wait_state(State.IDLE, 5, since=second)
                pulse.stop_recording_speaker()
            return emu, conductor

    emu, conductor = asyncio.run(scenario())
    assert emu.turns[0].interrupted and len(emu.turns) == 2
    barge = [t for t in conductor.turns if t.barge_in]
    assert barge and barge[0].submitted
    cut = [t for t in conductor.turns if t.barge_in_to_silent_ms is not None]
    assert cut, "the barge-in's flush was not measured"
    # the first reply was cut well before its 6 s
    played = np.frombuffer(recording.read_bytes(), "<i2").astype(np.float64)
    assert played.size


def test_a_drop_shows_offline_and_recovers(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone")) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                mark = conductor.seq
                # the service goes away for a few attempts, then comes back
                emu.scenario = Scenario(reply="tone", reject_setup=(1011, "The service is currently unavailable."),
                                        fault_connections=3)
                await emu.drop_all()
                offline = await conductor.wait_state(State.OFFLINE, 5, since=mark)
                await emu.wait_for(lambda e: len(e.connections) >= 3, 15)
                shown = (conductor.state, conductor.lights.state, conductor.lights.pattern.kind)
                await conductor.wait_state(State.IDLE, 20, since=offline)
                states = [s for seq, s, _ in conductor.history if seq > mark]
                return emu, shown, states

    emu, shown, states = asyncio.run(scenario())
    # offline while the retries fail, with the offline blink, and no flicker through "connecting"
    assert shown == (State.OFFLINE, "offline", "blink")
    assert states == [State.OFFLINE, State.IDLE]
    assert emu.connections[-1].resumed_handle == emu.connections[0].handles_issued[-1]


def test_a_rejected_key_shows_error(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0, rejected_keys=frozenset({KEY})), Scenario()) as emu:
            monkeypatch.setenv("GEMINI_API_KEY", KEY)
            daemon = Daemon(config_for(emu, tmp_path), pin_factory=gpio, printer=lambda _l: None)
            task = asyncio.create_task(daemon.run())
            await eventually(lambda: daemon.conductor is not None, 15, "the daemon to start")
            await daemon.conductor.wait_state(State.ERROR, 10)
            led = gpio.pin(LED_PIN)
            await eventually(lambda: any(s.state == 1.0 for s in led.states) and led.state == 0, 5, "an error blink")
            status = await request(daemon.control_path, "status")
            daemon.request_stop()
            assert await asyncio.wait_for(task, 10) == 0
            return emu, status

    emu, status = asyncio.run(scenario())
    assert status["state"] == "error" and "API key not valid" in status["last_error"]
    assert len(emu.connections) == 1  # no retry storm


def test_appliance_run_as_a_process_with_ctl_and_sigterm(pulse, question, tmp_path):
    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.7), Scenario(reply="tone", tone_seconds=0.5)) as emu:
            sock = tmp_path / "run.sock"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
            env.update(pulse.env())
            env.update({"GEMINI_API_KEY": KEY, "GPIOZERO_PIN_FACTORY": "mock"})
            # systemd's side of sd_notify: a datagram socket, and a 1 s watchdog
            notify_path = tmp_path / "notify.sock"
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(str(notify_path))
            notify.settimeout(0.2)
            messages: list[str] = []
            listening = threading.Event()
            listening.set()

            def drain() -> None:  # the kernel queues only a few datagrams: read as they come
                while listening.is_set():
                    try:
                        messages.append(notify.recv(4096).decode())
                    except TimeoutError:
                        continue

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            env.update({"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"})
            args = [
                "--set", f"live.endpoint={emu.url}", "--set", "audio.input_device=pulse",
                "--set", "audio.output_device=pulse", "--set", f"control.socket={sock}",
                "--set", f"state.dir={tmp_path / 'state'}", "--set", "button.debounce_ms=5",
            ]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", *args, "run",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )

            async def ctl(*words: str) -> tuple[int, str]:
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "appliance", "--set", f"control.socket={sock}", "ctl", *words,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
                )
                out, _ = await child.communicate()
                return child.returncode, out.decode()

            try:
                await eventually(lambda: sock.exists(), 20, "the control socket")
                deadline = time.monotonic() + 20
                while not re.search(r"state:\s+idle", (await ctl("status"))[1]):
                    assert time.monotonic() < deadline, "the daemon never became idle"
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.5)  # the rig's microphone stream starts late
                code, out = await ctl("press")
                assert code == 0, out
                await speak(pulse, question)
                code, out = await ctl("release")
                assert code == 0, out
                await emu.wait_for(lambda e: e.turns and e.turns[0].turn_complete, 20)
                code, out = await ctl("volume", "35")
                assert code == 0 and "35" in out
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 5)
                stopped_in = time.monotonic() - started
                stderr = (await proc.stderr.read()).decode()
                code_after, out_after = await ctl("status")
            finally:
                listening.clear()
                await asyncio.to_thread(reader.join, 5)
                notify.close()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return emu, proc.returncode, stopped_in, stderr, code_after, out_after, messages

    emu, code, stopped_in, stderr, code_after, out_after, messages = asyncio.run(scenario())
    assert any(m.startswith("READY=1") for m in messages)
    assert "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1", messages[-6:]
    assert any(m.startswith("STATUS=listening") for m in messages)
    assert code == 0, stderr
    assert stopped_in < 2.0
    assert emu.connections[-1].closed_by == "client" and emu.connections[-1].close_code == 1000
    assert KEY not in stderr
    assert code_after == 2 and "not running" in out_after
    assert (tmp_path / "state").exists()


def test_a_reply_that_never_comes_returns_to_idle_with_an_error(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="silent")) as emu:
            async with Running(config_for(emu, tmp_path, reply_timeout_s=1.5), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                mark = conductor.seq
                assert (await request(daemon.control_path, "tap"))["ok"]
                await speak(pulse, question)
                thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
                await conductor.wait_state(State.IDLE, 5, since=thinking)
                return conductor

    conductor = asyncio.run(scenario())
    assert conductor.turns[-1].outcome == "no reply in time"
    assert "no reply within 1.5 s" in conductor.last_error


def test_the_keyboard_is_the_button_on_a_machine_without_gpio(pulse, question, tmp_path):
    """`appliance run --keyboard` in a terminal: the help line, a held turn shown as one line per
    speaker (not one word per line), then `q` quits cleanly."""
    import pty

    answer = "Eggs and spinach make a fine omelette tonight."

    async def read_until(master: int, seen: bytes, wanted: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while wanted not in seen:
            assert time.monotonic() < deadline, seen
            seen += await asyncio.to_thread(os.read, master, 4096)
        return seen

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.3, transcript=QUESTION, reply_text=answer)
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_", "GPIOZERO_"))}
            env.update(pulse.env())
            env["GEMINI_API_KEY"] = KEY
            master, slave = pty.openpty()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", "--set", f"live.endpoint={emu.url}",
                "--set", "audio.input_device=pulse", "--set", "audio.output_device=pulse",
                "--set", f"control.socket={tmp_path / 'kb.sock'}", "--set", f"state.dir={tmp_path / 'state'}",
                "run", "--keyboard",
                stdin=slave, stdout=slave, stderr=asyncio.subprocess.PIPE, env=env,
            )
            os.close(slave)
            seen = b""
            try:
                deadline = time.monotonic() + 20
                while b"q = quit" not in seen:
                    assert time.monotonic() < deadline, seen
                    seen += await asyncio.to_thread(os.read, master, 4096)
                await emu.wait_for(lambda e: e.connections and e.connections[0].setup_complete, 10)
                os.write(master, b"\r")  # Enter: start holding
                await speak(pulse, question)
                os.write(master, b"\r")  # Enter: done
                seen = await read_until(master, seen, b"answered: ", 20)
                seen = await read_until(master, seen, answer.encode()[-12:], 5)
                os.write(master, b"q")
                code = await asyncio.wait_for(proc.wait(), 5)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                os.close(master)
            return code, emu, seen.decode(errors="replace")

    code, emu, shown = asyncio.run(scenario())
    assert code == 0
    assert emu.connections[0].closed_by == "client" and emu.connections[0].close_code == 1000
    lines = [line.strip() for line in shown.replace("\r", "\n").split("\n")]
    assert f"heard: {QUESTION}" in lines
    assert f"answered: {answer}" in lines


def test_a_question_asked_while_offline_is_answered_when_the_link_is_back(pulse, question, gpio, tmp_path, monkeypatch):
    """The press plays the no-network earcon, the utterance is kept, and it goes out on reconnect."""
    pulse.activate(monkeypatch)

    async def scenario():
        first = Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.3))
        await first.start()
        port = first.port
        second = Emulator(EmulatorConfig(pace=0, port=port), Scenario(reply="tone", tone_seconds=0.3))
        try:
            async with Running(config_for(first, tmp_path, reply_timeout_s=30.0), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                mark = conductor.seq
                await first.stop()  # the router reboots
                await conductor.wait_state(State.OFFLINE, 10, since=mark)
                assert (await request(daemon.control_path, "press"))["ok"]
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                await speak(pulse, question)
                assert (await request(daemon.control_path, "release"))["ok"]
                thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
                await second.start()  # the network is back
                speaking = await conductor.wait_state(State.SPEAKING, 30, since=thinking)
                await conductor.wait_state(State.IDLE, 10, since=speaking)
                return second, conductor
        finally:
            await first.stop()
            await second.stop()

    second, conductor = asyncio.run(scenario())
    heard = np.frombuffer(second.turns[0].user_pcm, "<i2")
    assert len(heard) / RATE >= len(question) / 2 / RATE  # the whole question, sent late
    assert conductor.turns[-1].outcome == "answered"


def test_a_long_silent_hold_starts_a_new_conversation(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            cfg = config_for(emu, tmp_path)
            cfg = dataclasses.replace(cfg, button=dataclasses.replace(cfg.button, long_hold_s=1.0))
            async with Running(cfg, monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                # one turn, so that there is a conversation to forget
                mark = conductor.seq
                assert (await request(daemon.control_path, "tap"))["ok"]
                await speak(pulse, question)
                await conductor.wait_state(State.IDLE, 20, since=await conductor.wait_state(State.SPEAKING, 20, since=mark))
                mark = conductor.seq
                button = gpio.pin(BUTTON_PIN)
                button.drive_low()  # held, and nothing said
                await conductor.wait_state(State.CONNECTING, 5, since=mark)
                button.drive_high()
                await conductor.wait_state(State.IDLE, 10, since=mark)
                return emu, [s for seq, s, _ in conductor.history if seq > mark]

    emu, states = asyncio.run(scenario())
    assert states == [State.LISTENING, State.CONNECTING, State.IDLE]
    assert len(emu.connections) == 2 and emu.connections[1].resumed_handle is None  # a fresh conversation
    assert len(emu.turns) == 1  # the silent hold sent nothing


def test_ctl_night_dims_the_leds_and_auto_with_no_window_brings_them_back(
    pulse, gpio, tmp_path, monkeypatch, capsys
):
    """`appliance ctl night on` caps the LED at night_brightness; `night auto` with an empty
    window hands it back to the schedule, which says day; status says which holds."""
    from appliance.ipc.ctl import ctl_main

    pulse.activate(monkeypatch)
    night_cap = 0.1

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone")) as emu:
            cfg = config_for(emu, tmp_path)
            # idle lit at full brightness, so any cap shows on the pin
            cfg = dataclasses.replace(cfg, leds=dataclasses.replace(
                cfg.leds, idle_brightness=1.0, max_brightness=1.0, night="", night_brightness=night_cap))
            async with Running(cfg, monkeypatch, gpio) as daemon:
                sock = daemon.control_path
                led = gpio.pin(LED_PIN)
                await eventually(lambda: led.state == 1.0, 5, "the idle LED at full brightness")
                before = await request(sock, "status")

                code = await asyncio.to_thread(ctl_main, ["night", "on"], sock)
                printed = capsys.readouterr().out
                await eventually(lambda: 0 < led.state <= night_cap + 1e-9, 5, "the LED dimmed to the night cap")
                led.clear_states()
                during = await request(sock, "status")
                refused = await request(sock, "night", mode="dim")

                back = await request(sock, "night", mode="auto")
                await eventually(lambda: led.state == 1.0, 5, "the LED back at full brightness")
                dimmed_levels = [s.state for s in led.states]
                after = await request(sock, "status")
                return code, printed, before, during, refused, back, after, dimmed_levels

    code, printed, before, during, refused, back, after, dimmed_levels = asyncio.run(scenario())
    assert before["night"] == "off (by the schedule)"
    assert code == 0 and printed == "night: on (set by hand)\n"
    assert during["ok"] and during["night"] == "on (set by hand)" and during["state"] == "idle"
    assert refused["ok"] is False and "on, off, auto" in refused["error"]
    assert back == {"ok": True, "night": "off (by the schedule)"}
    assert after["night"] == "off (by the schedule)"
    # while night mode held (a refused request included), the pin never went above the cap;
    # then it came back to full
    assert all(level <= night_cap + 1e-9 for level in dimmed_levels[:-1]), dimmed_levels
    assert dimmed_levels[-1] == 1.0


def test_the_microphone_rests_between_turns_yet_a_word_begun_before_the_press_is_sent_whole(
    pulse, question, gpio, tmp_path, monkeypatch
):
    """Idle, the microphone converts nothing (issue #11); the press still gets the 300 ms before it."""
    pulse.activate(monkeypatch)
    voice = np.frombuffer(question, "<i2")
    loud = np.flatnonzero(np.abs(voice.astype(np.int32)) > 0.02 * 32768)
    voice = voice[loud[0] :]  # starts on the first syllable

    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.7), Scenario(reply="tone", tone_seconds=0.3)) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                capture, conductor = daemon.capture, daemon.conductor
                callbacks = capture.stats.callbacks
                await eventually(lambda: capture.stats.callbacks > callbacks + 25, 5, "half a second of rest")
                rested_frames = capture.stats.frames
                player = pulse.play_into_mic(voice.tobytes(), RATE)
                await asyncio.sleep(0.15)  # the user is already talking when the button goes down
                mark = conductor.seq
                gpio.pin(BUTTON_PIN).drive_low()
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                await asyncio.to_thread(player.wait, 30)
                gpio.pin(BUTTON_PIN).drive_high()
                await conductor.wait_state(State.IDLE, 20, since=mark + 1)
            return emu, rested_frames

    emu, rested_frames = asyncio.run(scenario())
    assert rested_frames == 0  # nothing was converted or handed to the loop while nobody pressed
    heard = np.frombuffer(emu.turns[0].user_pcm, "<i2").astype(np.float64)
    probe = voice[: RATE // 2].astype(np.float64)  # the first half second, first syllable included
    corr = np.correlate(heard[: 2 * RATE], probe, mode="valid")
    lag = int(np.argmax(corr))
    window = heard[lag : lag + probe.size]
    assert np.dot(window, probe) / (np.linalg.norm(window) * np.linalg.norm(probe) + 1e-9) > 0.9
