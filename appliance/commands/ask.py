"""One question, one answer: `appliance ask`.

The same path the appliance uses for a button press, minus the button: open a
session, send one activity (or a typed line), collect the reply until the turn is
complete, and hand back what was heard and said.  The demo and the tests reuse
`run_turn` so that there is one way a turn is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from appliance.audio import wavio
from appliance.settings.loader import Config, ConfigError, endpoint_url, load_api_key
from appliance.live import messages as p
from appliance.live.conversation import Attributed, Outcome, TurnEnded
from appliance.live.connection import (
    InsecureEndpointError,
    LinkChanged,
    LinkState,
    LiveSession,
    SessionOptions,
    check_endpoint,
)
from appliance.settings.secrets import NO_API_KEY, Secret

log = logging.getLogger(__name__)

#: audio goes out in 40 ms messages: small enough to start the server early,
#: large enough not to flood the socket with tiny frames
CHUNK_BYTES = 16000 * 2 * 40 // 1000


class AskError(Exception):
    """A turn that could not be done; the text is one line for the user."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TurnResult:
    input_transcript: str = ""
    output_transcript: str = ""
    reply_pcm: bytearray = field(default_factory=bytearray)
    reply_rate: int = p.OUTPUT_RATE
    usage: p.Usage | None = None
    interrupted: bool = False
    #: seconds from the end of the user's input to the first reply audio
    first_audio_s: float | None = None

    @property
    def reply_seconds(self) -> float:
        return len(self.reply_pcm) / 2 / self.reply_rate


def session_from_config(
    cfg: Config,
    api_key: Secret | None,
    *,
    functions: tuple[dict, ...] = (),
    google_search: bool = False,
) -> LiveSession:
    """The session as the config describes it; the daemon adds its tools' declarations."""
    live = cfg.live
    settings = p.SessionSettings(
        model=live.model,
        voice=live.voice,
        language=live.language,
        system_instruction=live.system_instruction,
        input_transcription=live.input_transcription,
        output_transcription=live.output_transcription,
        compression_trigger_tokens=live.compression_trigger_tokens,
        compression_target_tokens=live.compression_target_tokens,
        functions=functions,
        google_search=google_search,
    )
    options = SessionOptions(
        setup_timeout_s=live.setup_timeout_s,
        keepalive_interval_s=live.keepalive_interval_s,
        keepalive_timeout_s=live.keepalive_timeout_s,
        auth=live.auth,
        reply_timeout_s=live.reply_timeout_s,
    )
    return LiveSession(endpoint_url(live), settings, api_key, options)


async def connect(session: LiveSession, timeout: float) -> None:
    """Start the session and wait for it; a refusal or an unreachable host is an AskError."""
    session.start()
    deadline = time.monotonic() + timeout
    while True:
        if session.state is LinkState.READY:
            return
        if session.state is LinkState.ERROR:
            raise AskError(f"the service refused the session: {session.last_error}", 3)
        if session.state is LinkState.OFFLINE:
            raise AskError(session.last_error or f"cannot reach {session.url}", 3)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AskError(f"no session within {timeout:g} s: {session.last_error or 'no answer'}", 3)
        await session.wait_ready(min(remaining, 0.5))


async def run_turn(
    session: LiveSession,
    *,
    pcm: bytes | None = None,
    text: str | None = None,
    reply_timeout_s: float,
    on_event: Callable[[object], None] | None = None,
) -> TurnResult:
    """Send one utterance (16 kHz s16le mono) or one line of text; collect the reply."""
    if pcm is not None:
        await session.activity_start()
        for i in range(0, len(pcm), CHUNK_BYTES):
            await session.send_audio(pcm[i : i + CHUNK_BYTES])
        if not await session.activity_end():
            raise AskError("the recording holds no audio", 2)
    elif text is not None:
        await session.send_text(text)
    else:
        raise ValueError("run_turn needs pcm or text")
    return await collect_reply(session, reply_timeout_s=reply_timeout_s, on_event=on_event)


async def collect_reply(
    session: LiveSession,
    *,
    reply_timeout_s: float,
    on_event: Callable[[object], None] | None = None,
) -> TurnResult:
    """Gather one reply until the session says its turn ended; `on_event` sees every
    server event of the turn as it comes.

    The session's turn clock ends a reply that never comes (`reply_timeout_s` of
    its options); the wait here is only a backstop a little longer than that.
    """
    result = TurnResult()
    sent_at = time.monotonic()
    turn: int | None = None
    while True:
        try:
            event = await session.next_event(reply_timeout_s + 5.0)
        except TimeoutError:
            raise AskError(f"no reply within {reply_timeout_s:g} s", 4) from None
        if isinstance(event, TurnEnded):
            if turn is not None and event.turn != turn:
                continue
            if event.outcome is Outcome.COMPLETE:
                return result
            if event.outcome is Outcome.TIMED_OUT:
                raise AskError(event.detail, 4)
            if event.outcome is Outcome.EMPTY:
                raise AskError("the question holds nothing to send", 2)
            raise AskError(event.detail, 3)
        if isinstance(event, LinkChanged):
            if event.state is LinkState.ERROR:
                raise AskError(f"the service refused the session: {event.reason}", 3)
            continue
        if isinstance(event, Attributed):
            if event.turn is not None:
                turn = event.turn
            event = event.event
        if on_event is not None:
            on_event(event)
        if isinstance(event, p.AudioChunk):
            if result.first_audio_s is None:
                result.first_audio_s = time.monotonic() - sent_at
            result.reply_rate = event.rate
            result.reply_pcm += event.pcm
        elif isinstance(event, p.InputTranscript):
            result.input_transcript += event.text
        elif isinstance(event, p.OutputTranscript):
            result.output_transcript += event.text
        elif isinstance(event, p.Usage):
            result.usage = event
        elif isinstance(event, p.Interrupted):
            result.interrupted = True
        elif isinstance(event, p.ToolCall):
            await _refuse_tools(session, event)


async def _refuse_tools(session: LiveSession, event: p.ToolCall) -> None:
    """`ask` declares no tools; answer any call so the model is not left waiting."""
    responses = [
        p.FunctionResponse(id=c.id, name=c.name, response={"error": "this tool is not available here"})
        for c in event.calls
        if c.id
    ]
    if responses:
        await session.send_tool_response(responses)


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
    printer: Callable[[str], None] = print,
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
