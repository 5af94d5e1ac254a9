"""One turn done by hand: connect, send one utterance or line, collect the reply.

Shared by `appliance ask` (a WAV file or typed text), its microphone variant and the
demo, so that there is one way a turn is done outside the daemon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from appliance.live import messages as p
from appliance.live.conversation import Attributed, Outcome, TurnEnded
from appliance.live.connection import LiveSession
from appliance.live.link import LinkChanged, LinkState

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
