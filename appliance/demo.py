"""`appliance demo`: one whole turn, offline, with nothing but this package.

It starts the bundled emulator on loopback, has a generated speaker ask a
question, sends it along the same path as `appliance ask`, and writes the reply.
No key, no sound card and no GPIO are needed; what happens is printed as a
timeline so a newcomer can see the protocol at work.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from .ask import AskError, connect, print_result, run_turn, session_from_config
from .audio import speech, wavio
from .config import Config, LiveConfig
from .live import protocol as p
from .live.emulator import Emulator, EmulatorConfig, Scenario
from .live.session import LinkChanged
from .secret import Secret

OFFLINE_KEY = Secret("offline-demo-key")
REPLY_TEXT = "Echoing you back, since I am the offline emulator."


class Timeline:
    """Prints each step with the time since the demo started."""

    def __init__(self, printer: Callable[[str], None]) -> None:
        self._t0 = time.monotonic()
        self._printer = printer
        self._audio_chunks = 0

    def say(self, text: str) -> None:
        self._printer(f"  +{time.monotonic() - self._t0:6.3f} s  {text}")

    def on_event(self, event: object) -> None:
        if isinstance(event, p.AudioChunk):
            self._audio_chunks += 1
            if self._audio_chunks == 1:
                self.say(f"first reply audio ({event.rate} Hz)")
            return
        if isinstance(event, p.InputTranscript):
            self.say(f"server heard: {event.text!r}")
        elif isinstance(event, p.OutputTranscript):
            self.say(f"reply text: {event.text!r}")
        elif isinstance(event, p.GenerationComplete):
            self.say(f"generation complete after {self._audio_chunks} audio chunks")
        elif isinstance(event, p.TurnComplete):
            self.say("turn complete")
        elif isinstance(event, p.Usage):
            self.say(f"usage: {event.prompt_tokens} prompt + {event.response_tokens} reply tokens")
        elif isinstance(event, LinkChanged):
            self.say(f"link {event.state.value}: {event.reason}")


async def demo_command(out_dir: Path, text: str, printer: Callable[[str], None] = print) -> int:
    timeline = Timeline(printer)
    pcm, how = speech.utterance(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    question = out_dir / "demo-question.wav"
    reply = out_dir / "demo-reply.wav"
    wavio.write_wav(question, pcm, p.INPUT_RATE)
    printer(f"appliance demo: offline, against the bundled Live API emulator ({how} voice)")
    timeline.say(f"wrote the question ({len(pcm) / 2 / p.INPUT_RATE:.2f} s) to {question}")

    scenario = Scenario(reply="echo", transcript=text, reply_text=REPLY_TEXT)
    async with Emulator(EmulatorConfig(), scenario) as emulator:
        timeline.say(f"emulator listening on {emulator.url}")
        cfg = dataclasses.replace(Config(), live=dataclasses.replace(LiveConfig(), endpoint=emulator.url))
        session = session_from_config(cfg, OFFLINE_KEY)
        try:
            await connect(session, cfg.live.setup_timeout_s + 1.0)
            for event in session.drain_events():
                timeline.on_event(event)
            timeline.say("setup complete: automatic activity detection is off, the appliance marks turns")
            audio = wavio.read_wav_as_pcm16(question, p.INPUT_RATE)  # the same path as `ask FILE`
            timeline.say("activityStart, audio, activityEnd ->")
            result = await run_turn(
                session, pcm=audio, reply_timeout_s=cfg.live.reply_timeout_s, on_event=timeline.on_event
            )
        except AskError as exc:
            printer(f"appliance demo: {exc}")
            return exc.exit_code
        finally:
            await session.close()
        sent = [r.message for r in emulator.received if r.conn_id == emulator.connections[-1].id]
        kinds = _summarise(sent)
    wavio.write_wav(reply, bytes(result.reply_pcm), result.reply_rate)
    timeline.say(f"the emulator received: {kinds}")
    print_result(result, reply, printer)
    return 0


def _summarise(messages: list[dict]) -> str:
    """'setup, activityStart, 52 x audio, activityEnd' from the received messages."""
    names: list[str] = []
    for message in messages:
        top = next(iter(message), "?")
        body = message.get(top)
        name = top
        if top in ("realtimeInput", "realtime_input") and isinstance(body, dict) and body:
            name = next(iter(body))
        names.append(name)
    parts: list[str] = []
    for name in names:
        if parts and parts[-1].endswith(f"x {name}"):
            count = int(parts[-1].split(" x ")[0]) + 1
            parts[-1] = f"{count} x {name}"
        elif parts and parts[-1] == name:
            parts[-1] = f"2 x {name}"
        else:
            parts.append(name)
    return ", ".join(parts)
