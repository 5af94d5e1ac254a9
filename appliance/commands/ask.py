"""One question, one answer: `appliance ask`.

The same path the appliance uses for a button press, minus the button: open a
session, send one activity (or a typed line), collect the reply until the turn is
complete, and print what was heard and said.  The turn itself is `commands.turn`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from appliance.audio import wavio
from appliance.commands.turn import AskError, TurnResult, connect, run_turn
from appliance.console import print_now
from appliance.live import messages as p
from appliance.live.endpoint import InsecureEndpointError, check_endpoint, endpoint_url
from appliance.live.from_config import session_from_config
from appliance.settings.keys import load_api_key
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.settings.secrets import NO_API_KEY

log = logging.getLogger(__name__)


def print_result(result: TurnResult, out: Path | None, printer: Callable[[str], None]) -> None:
    if result.input_transcript:
        printer(f"you said:   {result.input_transcript.strip()}")
    if result.output_transcript:
        printer(f"reply:      {result.output_transcript.strip()}")
    if out is not None:
        printer(f"reply audio: {out} ({result.reply_seconds:.2f} s at {result.reply_rate} Hz)")
    if result.first_audio_s is not None:
        printer(f"first reply audio {result.first_audio_s * 1000:.0f} ms after the end of input")


async def ask_command(
    cfg: Config,
    *,
    wav: Path | None,
    text: str | None,
    out: Path | None,
    printer: Callable[[str], None] = print_now,
) -> int:
    """The `appliance ask` command; returns the process exit code."""
    pcm: bytes | None = None
    if wav is not None:
        try:
            # a regular file of at most MAX_WAV_BYTES, 8-192 kHz, at most MAX_QUESTION_SECONDS
            pcm = wavio.read_wav_as_pcm16(wav, p.INPUT_RATE, max_seconds=wavio.MAX_QUESTION_SECONDS)
        except wavio.WavError as exc:
            raise AskError(str(exc), 2) from None
        except OSError as exc:
            raise AskError(f"cannot read {wav}: {exc.strerror or exc}", 2) from None
        except MemoryError:
            raise AskError(f"{wav}: not enough memory to convert it here; convert it to 16 kHz mono first", 2) from None
        if not pcm:
            raise AskError(f"{wav} holds no audio", 2)
    try:
        api_key = load_api_key(cfg)
    except ConfigError as exc:
        raise AskError(str(exc), 2) from None
    if api_key is None:
        raise AskError(NO_API_KEY, 2)
    try:
        check_endpoint(endpoint_url(cfg.live))
    except InsecureEndpointError as exc:
        raise AskError(str(exc), 2) from None
    if pcm is None and text is None:
        from appliance.commands.mic_turn import ask_microphone

        result = await ask_microphone(cfg, api_key, out=out, printer=printer)
        print_result(result, out, printer)
        return 0
    session = session_from_config(cfg, api_key)
    try:
        await connect(session, cfg.live.setup_timeout_s + 1.0)
        result = await run_turn(session, pcm=pcm, text=text, reply_timeout_s=cfg.live.reply_timeout_s)
    finally:
        await session.close()
    if out is not None:
        try:
            wavio.write_wav(out, bytes(result.reply_pcm), result.reply_rate)
        except OSError as exc:
            raise AskError(f"cannot write {out}: {exc.strerror or exc}", 2) from None
    print_result(result, out, printer)
    return 0
