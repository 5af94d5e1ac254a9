"""The model's side of a session: turns queued one behind another, replies streamed, barge-in, tool rounds.

Each reply runs as its own task after the ones queued before it, so an ``activityStart`` can cut the one
speaking mid-stream, as on the real service. Reply audio is sent in chunks paced faster than real time;
every turn ends with turnComplete and usageMetadata, and (with resumption on) a fresh handle.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from appliance.audio.resample import resample_pcm16
from appliance.emulator.activity import INPUT_RATE
from appliance.emulator.host import Host
from appliance.emulator.records import ConnectionRecord, TurnEnding, TurnRecord
from appliance.emulator.rejections import INTERNAL_ERROR, ProtocolViolation
from appliance.emulator.resumption import Conversation
from appliance.emulator.scenario import OUTPUT_RATE, Scenario, tone_pcm
from appliance.emulator.setup_message import SessionOptions
from appliance.emulator.tool_calls import ToolCalls, ToolRound
from appliance.emulator.wire import MALFORMED_FRAME, Ended, Wire

__all__ = ["ReplyPlayer"]

AUDIO_TOKENS_PER_SECOND = 32  # Gemini counts audio at 32 tokens per second
MAX_HANDLES_PER_RECORD = 100  # ConnectionRecord.handles_issued keeps the newest ones

ReplyBody = Callable[[TurnRecord], Awaitable[None]]


class ReplyPlayer:
    """Answers the turns of one connection. ``options`` and ``conversation`` are set once setup is read."""

    def __init__(self, wire: Wire, host: Host, record: ConnectionRecord, scenario: Scenario, *,
                 faults: bool) -> None:
        self._wire = wire
        self._config = host.config
        self._journal = host.journal
        self._conversations = host.conversations
        self._record = record
        self._scenario = scenario
        self._faults = faults
        self.options = SessionOptions()
        self.conversation: Conversation | None = None
        self.tool_calls = ToolCalls()
        self._reply_tasks: list[asyncio.Task[None]] = []
        self._current_turn: TurnRecord | None = None
        self._queued_turns: dict[asyncio.Task[None], TurnRecord] = {}
        self._malformed_sent = False
        self._unknown_sent = False
        #: drop the TCP connection once this fraction of the reply being streamed has gone out
        self._drop_fraction: float | None = scenario.drop_mid_reply if faults else None

    # ------------------------------------------------------------------------------------------------------
    # Asked for by the connection
    # ------------------------------------------------------------------------------------------------------

    def arm_drop_mid_reply(self, fraction: float) -> None:
        """Drop the TCP connection once ``fraction`` of the reply now streaming (or the next one) is out."""
        self._drop_fraction = fraction

    def reply_running(self) -> bool:
        return any(not task.done() for task in self._reply_tasks)

    async def start_turn(self, source: Literal["audio", "text", "clientContent"], *, pcm16: bytes = b"",
                         text: str | None = None, truncated: bool = False) -> None:
        if self.reply_running() and (self.options.interrupts or source != "audio"):
            await self.interrupt()
        if text is None:
            seconds = len(pcm16) / 2 / INPUT_RATE
            text = self._scenario.transcript if self._scenario.transcript is not None else f"({seconds:.1f} s of audio)"
        turn = TurnRecord(self._record.id, source, user_pcm=pcm16, input_text=text, audio_truncated=truncated)
        self._check_queue_room()
        await self._journal.add_turn(turn)
        self._queue_reply(turn, self._send_reply)

    async def interrupt(self) -> None:
        """Barge-in: stop the reply at once, then interrupted -> toolCallCancellation -> turnComplete.

        BLOCKING calls of the cut turn are cancelled; NON_BLOCKING ones keep running (3.8 cancels only
        blocking calls on new input), and their results are spoken once answered. With
        ``barge_in_turn_complete`` off, the cut reply gets no turnComplete at all.
        """
        turn = self._current_turn
        tasks, self._reply_tasks = self._reply_tasks, []
        for task in tasks:
            queued = self._queued_turns.get(task)
            if queued is not None and queued is not turn and queued.ending is None:
                queued.interrupted = True  # replaced before its reply began
                queued.ending = "superseded"
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._current_turn = None
        if turn is None or turn.ending is not None:
            return
        turn.interrupted = True
        await self._wire.send({"serverContent": {"interrupted": True}})
        cancelled = self.tool_calls.cancel_blocking(turn)
        if cancelled:
            turn.cancelled_tool_calls.extend(cancelled)
            await self._wire.send({"toolCallCancellation": {"ids": cancelled}})
        still_running = self.tool_calls.round_still_running(turn)
        if still_running is not None:
            still_running.awaiting = True
        if self._scenario.barge_in_turn_complete:
            await self._finish_turn(turn, None if still_running else "interrupted")
        elif still_running is None:
            await self._end_turn(turn, "interrupted_no_turn_complete")

    async def take_tool_responses(self, responses: list[dict[str, Any]]) -> None:
        """A toolResponse: rounds now fully answered go on; a waiting NON_BLOCKING one speaks its results."""
        for tool_round in self.tool_calls.accept(responses):
            tool_round.answered.set()
            if tool_round.awaiting:  # the first part is over: speak the results now (or after the current reply)
                tool_round.awaiting = False
                self._queue_reply(tool_round.turn, lambda turn, r=tool_round: self._follow_up(turn, r))
        await self._journal.changed()

    async def send_resumption_update(self) -> None:
        assert self.conversation is not None
        handle = self._conversations.issue_handle(self.conversation)
        self._record.handles_issued.append(handle)
        del self._record.handles_issued[:-MAX_HANDLES_PER_RECORD]
        await self._wire.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    # ------------------------------------------------------------------------------------------------------
    # The reply queue
    # ------------------------------------------------------------------------------------------------------

    def _check_queue_room(self) -> None:
        self._reply_tasks = [task for task in self._reply_tasks if not task.done()]
        if len(self._reply_tasks) >= self._config.max_queued_replies:
            raise ProtocolViolation(1011, INTERNAL_ERROR)  # bounded: a client that floods turns is cut off

    def _queue_reply(self, turn: TurnRecord, body: ReplyBody) -> None:
        """Run ``body(turn)`` as the next reply, after the ones already queued (one speaks at a time)."""
        self._check_queue_room()
        previous = self._reply_tasks[-1] if self._reply_tasks else None
        task = self._wire.spawn(self._reply(turn, previous, body))
        self._reply_tasks.append(task)
        self._queued_turns[task] = turn
        task.add_done_callback(lambda done: self._queued_turns.pop(done, None))

    async def _reply(self, turn: TurnRecord, previous: asyncio.Task[None] | None, body: ReplyBody) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        self._current_turn = turn
        try:
            await body(turn)
        finally:
            if self._current_turn is turn:
                self._current_turn = None

    # ------------------------------------------------------------------------------------------------------
    # One reply
    # ------------------------------------------------------------------------------------------------------

    async def _send_reply(self, turn: TurnRecord) -> None:
        scenario = self._scenario
        if self._faults and scenario.malformed_before_reply and not self._malformed_sent:
            self._malformed_sent = True
            await self._wire.send(MALFORMED_FRAME)
        if self._faults and scenario.unknown_message_before_reply and not self._unknown_sent:
            self._unknown_sent = True
            await self._wire.send({"emulatorUnknownMessage": {"note": "clients should log and ignore unknown messages"}})
        if self.options.input_transcription:
            await self._wire.send({"serverContent": {"inputTranscription": {"text": turn.input_text, "finished": True}}})
        if scenario.reply == "silent":
            await asyncio.Event().wait()  # a stalled service: the turn never gets an answer
        tool_round = await self._make_tool_calls(turn)
        if tool_round is not None and not tool_round.non_blocking:
            await tool_round.answered.wait()
            if scenario.cancel_tool_calls:
                await self._cancel_answered(tool_round)
        await self._speak(turn)
        if tool_round is None or not tool_round.non_blocking:
            await self._finish_turn(turn, "complete")
            return
        # NON_BLOCKING: this part ends IN_PROGRESS; the results are spoken once every call is answered
        answered = tool_round.answered.is_set()
        tool_round.awaiting = not answered
        await self._finish_turn(turn, None)
        if answered:
            await self._follow_up(turn, tool_round)

    async def _follow_up(self, turn: TurnRecord, tool_round: ToolRound) -> None:
        """After a NON_BLOCKING turn's calls are answered: speak about the results, then end IDLE."""
        cancelled = False
        if self._scenario.cancel_tool_calls:
            await self._cancel_answered(tool_round)
            cancelled = True
        if not (tool_round.silent or cancelled):
            await self._speak(turn)
        await self._finish_turn(turn, "complete")

    async def _cancel_answered(self, tool_round: ToolRound) -> None:
        # the model dropped the calls (newer input superseded them): the client should undo them
        tool_round.turn.cancelled_tool_calls.extend(tool_round.ids)
        await self._wire.send({"toolCallCancellation": {"ids": list(tool_round.ids)}})

    async def _make_tool_calls(self, turn: TurnRecord) -> ToolRound | None:
        tool_round = self.tool_calls.open_round(turn, self._scenario.tool_calls, self.options.tools,
                                                rules=self.options.rules,
                                                non_blocking_tools=self._scenario.non_blocking_tools)
        if tool_round is None:
            return None
        await self._journal.changed()
        await self._wire.send({"toolCall": {"functionCalls": tool_round.calls}})
        return tool_round

    async def _speak(self, turn: TurnRecord) -> None:
        audio = await self._reply_audio(turn)
        await self._stream_audio(turn, audio)
        turn.generation_complete = True
        await self._wire.send({"serverContent": {"generationComplete": True}})

    async def _reply_audio(self, turn: TurnRecord) -> bytes:
        if self._scenario.reply == "echo" and turn.user_pcm:
            return await asyncio.to_thread(resample_pcm16, turn.user_pcm, INPUT_RATE, OUTPUT_RATE)
        return await asyncio.to_thread(tone_pcm, self._scenario.tone_seconds, self._scenario.tone_hz)

    def _reply_transcript(self, turn: TurnRecord, seconds: float) -> str:
        if self._scenario.reply_text is not None:
            return self._scenario.reply_text
        if self._scenario.reply == "echo" and turn.user_pcm:
            return f"(echo of {seconds:.1f} s of audio)"
        return f"({self._scenario.tone_hz:g} Hz tone, {seconds:.1f} s)"

    async def _drop_if_due(self, sent_chunks: int, total_chunks: int) -> None:
        fraction = self._drop_fraction
        if fraction is not None and sent_chunks >= fraction * total_chunks:
            self._drop_fraction = None
            await self._wire.drop()
            raise Ended

    async def _stream_audio(self, turn: TurnRecord, audio: bytes) -> None:
        chunk_bytes = max(2, int(OUTPUT_RATE * self._config.chunk_ms / 1000) * 2)
        chunks = [audio[i:i + chunk_bytes] for i in range(0, len(audio), chunk_bytes)]
        fragments: dict[int, str] = {}
        if self.options.output_transcription and chunks:
            words = self._reply_transcript(turn, len(audio) / 2 / OUTPUT_RATE).split(" ")
            for index, word in enumerate(words):
                text = word if index == len(words) - 1 else word + " "
                slot = index * len(chunks) // len(words)
                fragments[slot] = fragments.get(slot, "") + text
        loop = asyncio.get_running_loop()
        start = loop.time()
        pace = self._config.pace
        chunk_seconds = chunk_bytes / 2 / OUTPUT_RATE
        for index, chunk in enumerate(chunks):
            await self._drop_if_due(index, len(chunks))
            if pace > 0:
                delay = start + index * chunk_seconds / pace - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let an activityStart in between even at full speed
            await self._drop_if_due(index, len(chunks))  # armed from outside while this chunk waited
            data = self._b64(chunk)
            content: dict[str, Any] = {"modelTurn": {"parts": [
                {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": data}}]}}
            if index in fragments:
                content["outputTranscription"] = {"text": fragments[index]}
            # State is updated before the send: a cancelled send has still written its frame (websockets
            # writes synchronously and only waits for the buffer to drain).
            turn.reply_pcm.extend(chunk)
            await self._wire.send({"serverContent": content})
            await self._journal.changed()
        await self._drop_if_due(len(chunks), len(chunks))

    def _b64(self, data: bytes) -> str:
        encoder = base64.urlsafe_b64encode if self._scenario.urlsafe_b64 else base64.b64encode
        return encoder(data).decode("ascii")

    # ------------------------------------------------------------------------------------------------------
    # Ending a turn
    # ------------------------------------------------------------------------------------------------------

    async def _finish_turn(self, turn: TurnRecord, ending: TurnEnding | None) -> None:
        """Send a turnComplete; ``ending`` None means more of this turn follows (IN_PROGRESS)."""
        prompt_tokens = round(len(turn.user_pcm) / 2 / INPUT_RATE * AUDIO_TOKENS_PER_SECOND)
        prompt_tokens += max(0, len(turn.input_text) // 4) if turn.source != "audio" else 0
        response_tokens = round(len(turn.reply_pcm) / 2 / OUTPUT_RATE * AUDIO_TOKENS_PER_SECOND)
        content: dict[str, Any] = {"turnComplete": True}
        status: str | None = None
        if self._scenario.interaction_status or turn.tool_behavior == "NON_BLOCKING":
            status = "IDLE" if ending is not None else "IN_PROGRESS"
            content["interactionStatus"] = status
        turn.turn_completes.append(status)
        if ending is not None:
            turn.turn_complete = True
            turn.ending = ending
            if self.conversation is not None:
                self.conversation.turns += 1
        await self._wire.send({"serverContent": content, "usageMetadata": {
            "promptTokenCount": prompt_tokens, "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_tokens + response_tokens}})
        await self._journal.changed()
        if self.options.resumption:
            await self.send_resumption_update()

    async def _end_turn(self, turn: TurnRecord, ending: TurnEnding) -> None:
        """End a turn without a turnComplete (barge-in with ``barge_in_turn_complete`` off)."""
        turn.ending = ending
        if self.conversation is not None:
            self.conversation.turns += 1
        await self._journal.changed()
        if self.options.resumption:
            await self.send_resumption_update()
