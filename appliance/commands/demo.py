"""`appliance demo`: the whole appliance, offline, with nothing but this package.

The bundled emulator stands in for the Live API and a virtual sound card for the
microphone and speaker.  A generated voice asks a question into the virtual
microphone (48 kHz stereo 32-bit, like an I2S mic array); a scripted button press
and release drive the conductor exactly as the GPIO button would; the reply comes
out of the real playback path into a WAV file.  The state and LED timeline is
printed as it happens, so a newcomer can watch a turn go by.

No key, no sound card and no GPIO are needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np

from appliance.live.from_config import session_from_config
from appliance.audio import speech, wavio
from appliance.audio.frames import RATE
from appliance.audio.resample import resample
from appliance.hw.gestures import Gesture
from appliance.app.conductor import Conductor, State
from appliance.settings.schema import AudioConfig, Config, LiveConfig
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.settings.secrets import Secret
from appliance.app.turntaking import Uplink
from appliance.textsafe import escape_controls

OFFLINE_KEY = Secret("offline-demo-key")
REPLY_TEXT = "Echoing you back, since I am the offline emulator."
MIC_RATE = 48000
LEAD_IN_S = 1.0
TIMEOUT_S = 60.0


class Timeline:
    """Prints each step with the time since the demo started."""

    def __init__(self, printer: Callable[[str], None]) -> None:
        self._t0 = time.monotonic()
        self._printer = printer

    def say(self, text: str) -> None:
        self._printer(f"  +{time.monotonic() - self._t0:6.2f} s  {text}")


@dataclasses.dataclass
class TimelineLights:
    """The demo's LEDs: it prints what a real LED would show."""

    timeline: Timeline
    shown: str = ""

    def show(self, state: str) -> None:
        if state != self.shown:
            self.shown = state
            self.timeline.say(f"LED  {state}")

    def close(self) -> None:
        pass


def i2s_microphone_audio(pcm16k: bytes) -> np.ndarray:
    """The utterance as an I2S mic array would give it: 48 kHz, two channels, 32-bit."""
    voice = np.frombuffer(pcm16k, "<i2").astype(np.float32) / 32768
    voice = resample(voice, RATE, MIC_RATE)
    stereo = np.stack([voice, voice * 0.9], axis=1)
    return (np.clip(stereo, -1, 1) * (2**31 - 1)).astype(np.int32)


async def demo_command(out_dir: Path, text: str, printer: Callable[[str], None] = print) -> int:
    from appliance.audio.capture import Capture
    from appliance.audio.speaker import Player
    from appliance.audio.virtual_card import VirtualCard

    timeline = Timeline(printer)
    pcm, how = speech.utterance(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    question, reply_wav = out_dir / "demo-question.wav", out_dir / "demo-reply.wav"
    wavio.write_wav(question, pcm, RATE)
    printer(f"appliance demo: the whole appliance offline (emulated Live API, virtual sound card, {how} voice)")

    loop = asyncio.get_running_loop()
    card = VirtualCard()
    scenario = Scenario(reply="echo", transcript=text, reply_text=REPLY_TEXT)
    async with Emulator(EmulatorConfig(), scenario) as emulator:
        timeline.say(f"emulator listening on {emulator.url}")
        cfg = dataclasses.replace(
            Config(),
            live=dataclasses.replace(LiveConfig(), endpoint=emulator.url, reply_timeout_s=20.0),
            audio=dataclasses.replace(AudioConfig(), input_device="virtual-mic", output_device="virtual-speaker"),
        )
        session = session_from_config(cfg, OFFLINE_KEY)
        uplink = Uplink(session, cfg.audio, cfg.vad)
        player = Player(cfg.audio, loop, pa=card)
        out_fmt = player.start()
        lights = TimelineLights(timeline)
        conductor = Conductor(cfg, session, uplink, player, lights)
        states: asyncio.Queue[State] = asyncio.Queue()

        def on_state(state: State, reason: str) -> None:
            timeline.say(f"state {state.value}: {reason}")
            states.put_nowait(state)

        conductor.on_state = on_state
        conductor.on_transcript = lambda line: timeline.say(
            f"{'server heard' if line.who == 'user' else 'reply text'}: {escape_controls(line.text)}"
        )
        capture = Capture(cfg.audio, uplink.on_frame, loop, pa=card, on_preroll=uplink.on_preroll)
        uplink.attach_gate(capture)
        in_fmt = capture.start()
        timeline.say(f"microphone {in_fmt.describe()}; speaker {out_fmt.describe()}")
        conductor.start()
        try:
            await _wait_state(states, State.IDLE)
            await asyncio.sleep(0.3)  # the room is quiet for a moment before the question
            conductor.gesture(Gesture.PRESS)
            timeline.say("button pressed (hold-to-talk); the question starts 0.2 s later")
            await asyncio.sleep(0.2)
            card.queue_input(i2s_microphone_audio(pcm))
            drained = await asyncio.to_thread(card.wait_input_drained, TIMEOUT_S)
            if not drained:
                printer("appliance demo: the virtual microphone stalled")
                return 1
            conductor.gesture(Gesture.RELEASE_HOLD)
            timeline.say("button released; the post-roll keeps the last word")
            await _wait_state(states, State.SPEAKING)
            await _wait_state(states, State.IDLE)
        except TimeoutError:
            printer(f"appliance demo: stuck in {conductor.state.value}: {conductor.last_error or 'no reason'}")
            return 1
        finally:
            await conductor.close()
            capture.close()
            player.close()
            await session.close()
        received = _summarise([r.message for r in emulator.received if r.conn_id == emulator.connections[-1].id])
    card.write_output_wav(reply_wav)
    card.terminate()
    timeline.say(f"the emulator received: {received}")
    if conductor.turns:
        timeline.say(conductor.turns[-1].line())
    printer(f"question: {question}")
    printer(f"reply:    {reply_wav} (what the speaker played, earcons included)")
    return 0


async def _wait_state(states: asyncio.Queue[State], wanted: State) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while await states.get() is not wanted:
            pass


def _summarise(messages: list[dict]) -> str:
    """'setup, activityStart, 52 x audio, activityEnd' from the received messages."""
    names: list[str] = []
    for message in messages:
        top = next(iter(message), "?")
        body = message.get(top)
        name = top
        if top in ("realtimeInput", "realtime_input") and isinstance(body, dict) and body:
            name = next(iter(body))
        if names and names[-1].endswith(f" x {name}"):
            count = int(names[-1].split(" x ")[0]) + 1
            names[-1] = f"{count} x {name}"
        elif names and names[-1] == name:
            names[-1] = f"2 x {name}"
        else:
            names.append(name)
    return ", ".join(names)
