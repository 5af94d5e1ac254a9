"""`appliance ask` without a file: one spoken turn through the real microphone and speaker.

It is the appliance's own path minus the button: the microphone is captured
continuously, the turn starts as if tapped (pre-roll included), ends on local
silence, and the reply plays through the jitter buffer.  PyAudio is imported
only here, so the other commands work where PortAudio is missing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

from appliance.commands.turn import AskError, TurnResult, collect_reply, connect
from appliance.console import print_now
from appliance.audio import wavio
from appliance.settings.paths import state_dir
from appliance.settings.schema import Config
from appliance.live import messages as p
from appliance.settings.secrets import Secret
from appliance.live.from_config import session_from_config
from appliance.app.turntaking import Mode, TurnReport, Uplink

log = logging.getLogger(__name__)


async def ask_microphone(
    cfg: Config, api_key: Secret, *, out: Path | None, printer: Callable[[str], None] = print_now
) -> TurnResult:
    from appliance.audio.capture import Capture
    from appliance.audio.devices import AudioDeviceError, open_pyaudio
    from appliance.audio.speaker import Player

    loop = asyncio.get_running_loop()
    try:
        pa = open_pyaudio()
    except ImportError:
        raise AskError("PyAudio is not installed; run scripts/bootstrap.sh, or ask with a WAV file", 2) from None
    player = Player(cfg.audio, loop, state_dir=state_dir(cfg), pa=pa)
    capture: Capture | None = None
    session = session_from_config(cfg, api_key)
    sender: asyncio.Task[None] | None = None
    try:
        try:
            player.start()
        except AudioDeviceError as exc:
            raise AskError(f"speaker: {exc}", 2) from None
        await connect(session, cfg.live.setup_timeout_s + 1.0)

        uplink = Uplink(session, cfg.audio, cfg.vad)
        ended: asyncio.Future[TurnReport] = loop.create_future()
        uplink.on_turn_end = lambda report: ended.done() or ended.set_result(report)
        sender = asyncio.create_task(uplink.run(), name="uplink")
        capture = Capture(cfg.audio, uplink.on_frame, loop, pa=pa, on_preroll=uplink.on_preroll)
        uplink.attach_gate(capture)
        try:
            capture.start()
        except AudioDeviceError as exc:
            raise AskError(f"microphone: {exc}", 2) from None

        player.play_earcon("listen_start")
        printer("listening: speak now; the turn ends when you stop talking")
        uplink.press(Mode.TAP)
        report = await asyncio.wait_for(ended, cfg.vad.max_turn_s + cfg.vad.no_speech_timeout_s + 5)
        player.play_earcon("listen_end")
        if not report.submitted:
            raise AskError("heard no speech, so nothing was sent", 2)

        drained: asyncio.Future[float] = loop.create_future()
        player.events.on_drained = lambda t: drained.done() or drained.set_result(t)
        player.new_reply()

        def on_event(event: object) -> None:
            if isinstance(event, p.AudioChunk):
                player.feed(event.pcm)
            elif isinstance(event, p.Interrupted):
                player.flush()

        result = await collect_reply(session, reply_timeout_s=cfg.live.reply_timeout_s, on_event=on_event)
        player.end_of_reply()
        await asyncio.wait_for(drained, result.reply_seconds + 5)
        if out is not None:
            wavio.write_wav(out, bytes(result.reply_pcm), result.reply_rate)
        return result
    finally:
        if sender is not None:
            sender.cancel()
        if capture is not None:
            capture.close()
        player.close()
        await session.close()
        pa.terminate()
