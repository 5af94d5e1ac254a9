"""One emulated Live API session: setup, activities, replies, tool calls, barge-in, goAway and faults.

The reader loop (``ConnectionHandler.run``) validates every client frame and reacts; replies are sent from a
separate task so that an ``activityStart`` can cut them off mid-stream, as on the real service.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from appliance.audio.resample import resample_pcm16

from appliance.emulator.records import ConnectionRecord, Received, TurnEnding, TurnRecord, scrub_blobs
from appliance.emulator.scenario import OUTPUT_RATE, Scenario, tone_pcm
from appliance.emulator.schema import (
    INVALID_ARGUMENT,
    ModelRules,
    ProtocolViolation,
    check_function_behaviors,
    check_model_rules,
    cut_reason,
    declared_behaviors,
    decode_audio_blob,
    invalid,
    normalise_client_message,
    parse_json_frame,
    peek_setup_model,
    snake_to_camel,
    validate_function_names,
    validate_realtime_input_shape,
)

if TYPE_CHECKING:
    from appliance.emulator.server import Emulator

__all__ = ["ConnectionHandler", "Conversation"]

log = logging.getLogger(__name__)

INPUT_RATE = 16000
AUDIO_TOKENS_PER_SECOND = 32  # Gemini counts audio at 32 tokens per second
MAX_EARLY_MESSAGES = 256  # messages buffered while a slow setup is pending; the rest wait in the socket
MAX_HANDLES_PER_RECORD = 100  # ConnectionRecord.handles_issued keeps the newest ones

UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
INVALID_KEY = "API key not valid. Please pass a valid API key."
NO_TURN = f"{INVALID_ARGUMENT} generic::invalid_argument: No turn to complete"
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
INTERNAL_ERROR = "Internal error encountered."
SESSION_NOT_FOUND = "BidiGenerateContent session not found"
MALFORMED_FRAME = b'{"serverContent": {'
MEDIA_CHUNKS_DEPRECATED = (f"{INVALID_ARGUMENT} realtimeInput.mediaChunks is deprecated; send realtimeInput.audio "
                           "or realtimeInput.video.")
TEXT_WITHOUT_ACTIVITY = (f"{INVALID_ARGUMENT} realtimeInput.text needs activityStart first (automatic activity "
                         "detection is off).")
MAX_ACTIVITY_TEXT_CHARS = 65_536  # text an open activity collects; the rest is dropped and flagged
MAX_GO_AWAY_S = 3600.0


class _Ended(Exception):
    """The emulator itself ended the connection (fault injection); stop whatever is running."""


@dataclass
class Conversation:
    """What a resumption handle points to: the turn count survives reconnects."""

    id: int
    model: str
    turns: int = 0
    handler: ConnectionHandler | None = None  # the connection currently attached, if any


@dataclass
class _ToolRound:
    """The function calls one turn made, and where that turn stands in waiting for their answers."""

    turn: TurnRecord
    ids: list[str]
    non_blocking: bool
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    #: a NON_BLOCKING turn has ended its first part (IN_PROGRESS) and speaks again once answered
    awaiting: bool = False
    #: every final answer asked for scheduling SILENT: take the result without speaking
    silent: bool = True


@dataclass
class _PendingCall:
    name: str
    turn: TurnRecord
    round: _ToolRound

    @property
    def answered(self) -> asyncio.Event:
        return self.round.answered


@dataclass
class _ActivityAudio:
    """Audio of the open activity, kept per input rate so resampling happens once, at the end."""

    segments: list[tuple[int, bytearray]] = field(default_factory=list)
    seconds: float = 0.0
    truncated: bool = False
    #: realtimeInput.text sent inside the activity (manual activity detection)
    texts: list[str] = field(default_factory=list)
    text_chars: int = 0

    @property
    def empty(self) -> bool:
        return not any(seg for _, seg in self.segments)

    def add_text(self, text: str) -> None:
        room = MAX_ACTIVITY_TEXT_CHARS - self.text_chars
        if len(text) > room:
            text = text[:max(0, room)]
            self.truncated = True
        if text:
            self.texts.append(text)
            self.text_chars += len(text)

    def add(self, pcm: bytes, rate: int, cap_seconds: float) -> None:
        room = cap_seconds - self.seconds
        if room <= 0:
            self.truncated = True
            return
        max_bytes = round(room * rate) * 2
        if len(pcm) > max_bytes:
            pcm = pcm[:max_bytes]
            self.truncated = True
        if self.segments and self.segments[-1][0] == rate:
            self.segments[-1][1].extend(pcm)
        else:
            self.segments.append((rate, bytearray(pcm)))
        self.seconds += len(pcm) / 2 / rate

    def to_16k(self) -> bytes:
        parts = [bytes(seg) if rate == INPUT_RATE else resample_pcm16(bytes(seg), rate, INPUT_RATE)
                 for rate, seg in self.segments if seg]
        return b"".join(parts)


def _duration_text(seconds: float) -> str:
    """proto3 JSON Duration text: "50s", "1.5s"."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


class ConnectionHandler:
    def __init__(self, emulator: Emulator, ws: ServerConnection, record: ConnectionRecord, scenario: Scenario,
                 *, faults: bool, key_rejected: bool) -> None:
        self.emu = emulator
        self.config = emulator.config
        self.ws = ws
        self.record = record
        self.scenario = scenario
        self.faults = faults
        self._key_rejected = key_rejected
        self.sent_count = 0
        self.conversation: Conversation | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reply_tasks: list[asyncio.Task[None]] = []
        self._current_turn: TurnRecord | None = None
        self._queued_turns: dict[asyncio.Task[None], TurnRecord] = {}
        self._pending_calls: dict[str, _PendingCall] = {}
        self._activity: _ActivityAudio | None = None  # open activity (AAD off) or the rolling buffer (AAD on)
        self._pending_user_text: str | None = None
        self._early: list[tuple[Any, Received]] = []
        self._malformed_sent = False
        self._unknown_sent = False
        #: drop the TCP connection once this fraction of the reply being streamed has gone out
        self._drop_fraction: float | None = scenario.drop_mid_reply if faults else None
        # From setup
        self.rules = ModelRules()
        self.aad_enabled = True
        self.interrupts = True
        self.input_transcription = False
        self.output_transcription = False
        self.resumption = False
        self.declared_functions: set[str] = set()
        self.behaviors: dict[str, str | None] = {}  # declared function -> behavior (None: left open)

    # ------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.ws.state is State.OPEN and not self.record.closed

    async def run(self) -> None:
        try:
            self._spawn(self._lifetime())
            if self.faults and self.scenario.drop_after == 0:
                await self.drop()
                return
            if self.faults and self.scenario.close_after == 0:
                raise ProtocolViolation(self.scenario.close_code, self.scenario.close_reason)
            message, received = await self._recv()
            await self._handle_setup(message)
            for message, received in self._early:
                await self._dispatch(message, received)
            self._early.clear()
            while True:
                message, received = await self._recv()
                await self._dispatch(message, received)
        except ProtocolViolation as violation:
            await self.close(violation.code, violation.reason)
        except (ConnectionClosed, _Ended):
            pass
        except Exception:  # an emulator bug: say so loudly, never leave the client hanging
            self.emu._internal_error(self.record.id, traceback.format_exc())
            await self.close(1011, INTERNAL_ERROR)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(self.config.close_timeout_s):
                await self.ws.wait_closed()
        except TimeoutError:
            self.ws.transport.abort()
        self._record_client_close()
        for call in self._pending_calls.values():
            call.answered.set()
        self._pending_calls.clear()
        for turn in self.emu.turns:
            if turn.conn_id == self.record.id and turn.ending is None:
                turn.ending = "disconnected"
        if self.conversation is not None and self.conversation.handler is self:
            self.conversation.handler = None

    def _record_client_close(self) -> None:
        if self.record.closed_by is None:
            rcvd = self.ws.protocol.close_rcvd
            self.record.closed_by = "client"
            self.record.close_code = rcvd.code if rcvd is not None else 1006
            self.record.close_reason = rcvd.reason if rcvd is not None else ""
            self.record.closed_at = asyncio.get_running_loop().time()

    async def close(self, code: int, reason: str) -> None:
        """Close with a close frame (server side); recorded before the handshake completes."""
        if self.record.closed:
            return
        if self.ws.protocol.close_rcvd is not None:
            # the client closed first and the handler has not noticed yet
            self._record_client_close()
            return
        reason = cut_reason(reason)
        self.record.closed_by = "server"
        self.record.close_code = code
        self.record.close_reason = reason
        self.record.closed_at = asyncio.get_running_loop().time()
        await self.emu._changed()
        await self.ws.close(code, reason)

    async def drop(self) -> None:
        """Drop the TCP connection without a close frame: the client sees 1006."""
        if self.record.closed:
            return
        self.record.closed_by = "server"
        self.record.close_code = 1006
        self.record.close_reason = ""
        self.record.closed_at = asyncio.get_running_loop().time()
        self.ws.transport.abort()
        await self.emu._changed()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # a task cancelled before it ran never awaits its coroutine; close it quietly
        task.add_done_callback(lambda _task: coro.close())
        return task

    async def _guarded(self, coro: Any) -> None:
        try:
            await coro
        except (ConnectionClosed, _Ended):
            pass
        except ProtocolViolation as violation:
            await self.close(violation.code, violation.reason)
        except Exception:
            self.emu._internal_error(self.record.id, traceback.format_exc())
            try:
                await self.close(1011, INTERNAL_ERROR)
            except ConnectionClosed:
                pass

    async def _lifetime(self) -> None:
        lifetime = self.config.connection_lifetime_s
        if lifetime is None:
            return
        await asyncio.sleep(lifetime)
        grace = self.config.goaway_grace_s
        if self.record.setup_complete:
            await self._send({"goAway": {"timeLeft": _duration_text(grace)}})
        await self._deadline(grace)

    async def _deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.close(1011, DEADLINE_EXPIRED)

    # ------------------------------------------------------------------------------------------------------
    # Faults injected from outside (Emulator methods, called by tests on the same loop)
    # ------------------------------------------------------------------------------------------------------

    async def _send_injected(self, payload: dict[str, Any] | bytes) -> bool:
        """Send one server message now, beside whatever the reply task is sending; False if it could not."""
        if not self.is_open:
            return False
        try:
            await self._send(payload)
        except (ConnectionClosed, _Ended):
            return False
        return True

    async def inject_go_away(self, time_left_s: float, close_after: bool) -> bool:
        """goAway now; then (close_after) the 1011 "Deadline expired" close once ``time_left_s`` has passed."""
        sent = await self._send_injected({"goAway": {"timeLeft": _duration_text(time_left_s)}})
        if sent and close_after:
            self._spawn(self._deadline(time_left_s))
        return sent

    async def inject_malformed(self) -> bool:
        """One truncated JSON frame now; a client must log it and carry on."""
        return await self._send_injected(MALFORMED_FRAME)

    def arm_drop_mid_reply(self, fraction: float) -> None:
        """Drop the TCP connection once ``fraction`` of the reply now streaming (or the next one) is out."""
        self._drop_fraction = fraction

    # ------------------------------------------------------------------------------------------------------
    # Sending and receiving
    # ------------------------------------------------------------------------------------------------------

    async def _send(self, payload: dict[str, Any] | bytes) -> None:
        """Send one server message as a binary frame, then apply count-based faults."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.sent_count += 1
        await self.ws.send(data)
        if not self.faults:
            return
        if self.scenario.drop_after is not None and self.sent_count >= self.scenario.drop_after:
            await self.drop()
            raise _Ended
        if self.scenario.close_after is not None and self.sent_count >= self.scenario.close_after:
            await self.close(self.scenario.close_code, self.scenario.close_reason)
            raise _Ended

    async def _recv(self) -> tuple[Any, Received]:
        frame = await self.ws.recv()
        now = time.monotonic()
        try:
            message = parse_json_frame(frame)
        except ProtocolViolation:
            await self.emu._record_received(Received(self.record.id, now, "invalid", None))
            raise
        kind = "invalid"
        if isinstance(message, dict) and len(message) == 1:
            kind = snake_to_camel(next(iter(message)))
        scrubbed = scrub_blobs(message) if isinstance(message, dict) else None
        received = Received(self.record.id, now, kind, scrubbed)
        await self.emu._record_received(received)
        return message, received

    # ------------------------------------------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------------------------------------------

    async def _handle_setup(self, message: Any) -> None:
        if not self.record.has_key:
            raise ProtocolViolation(1008, UNREGISTERED_CALLER)
        if self._key_rejected:
            raise ProtocolViolation(1008, INVALID_KEY)
        peeked = peek_setup_model(message)
        self.rules = self.config.model_rules.get(peeked, ModelRules()) if peeked else ModelRules()
        kind, setup = normalise_client_message(message, self.record.api_version,
                                               reject_null=not self.rules.null_values)
        if kind != "setup":
            raise invalid(f"{INVALID_ARGUMENT} The first message must be setup; got {kind}.")
        model = setup.get("model", "")
        if not model:
            raise invalid(f"{INVALID_ARGUMENT} setup.model is required, e.g. models/gemini-3.8-live.")
        model_id = model[len("models/"):] if model.startswith("models/") else None
        if model_id not in self.config.models:
            raise ProtocolViolation(
                1008, f"{model} is not found for API version {self.record.api_version}, or is not supported for "
                      "bidiGenerateContent. Call ListModels to see the list of available models and their "
                      "supported methods.")
        rules = self.config.model_rules.get(model_id, ModelRules())
        self.rules = rules
        check_model_rules(setup, model_id, rules)
        self._declare_tools(setup.get("tools", []), "setup.tools")
        aad = setup.get("realtimeInputConfig", {}).get("automaticActivityDetection", {})
        self.aad_enabled = not aad.get("disabled", False)
        handling = setup.get("realtimeInputConfig", {}).get("activityHandling")
        self.interrupts = handling != "NO_INTERRUPTION"
        self.input_transcription = "inputAudioTranscription" in setup
        self.output_transcription = "outputAudioTranscription" in setup
        self.resumption = "sessionResumption" in setup
        self._attach_conversation(setup.get("sessionResumption", {}).get("handle"), model_id)
        self.record.setup = setup
        self.record.model = model_id
        if self.aad_enabled:
            self._activity = _ActivityAudio()
        await self.emu._changed()

        if self.faults and self.scenario.reject_setup is not None:
            raise ProtocolViolation(*self.scenario.reject_setup)
        if self.faults and self.scenario.setup_delay_s > 0:
            await self._delay_setup(self.scenario.setup_delay_s)
        await self._send({"setupComplete": {}})
        self.record.setup_complete = True
        await self.emu._changed()
        if self.resumption:
            await self._send_resumption_update()
        if self.faults and self.scenario.close_after_setup:
            raise ProtocolViolation(self.scenario.close_code, self.scenario.close_reason)

    def _declare_tools(self, tools: list[dict[str, Any]], where: str) -> None:
        self.declared_functions = validate_function_names(tools, where)
        check_function_behaviors(tools, where, self.rules)
        self.behaviors = declared_behaviors(tools)

    def _attach_conversation(self, handle: str | None, model_id: str) -> None:
        if handle:
            conversation = self.emu._conversation_for_handle(handle)
            if conversation is None:
                raise ProtocolViolation(1008, SESSION_NOT_FOUND)
            if conversation.model != model_id:
                raise invalid(f"{INVALID_ARGUMENT} setup.model cannot change on resume; the session uses "
                              f"models/{conversation.model}.")
            if conversation.handler is not None and conversation.handler is not self and conversation.handler.is_open:
                raise ProtocolViolation(1011, INTERNAL_ERROR)
            self.record.resumed_handle = handle
            self.record.restored_turns = conversation.turns
        else:
            conversation = self.emu._new_conversation(model_id)
        conversation.handler = self
        self.conversation = conversation

    async def _delay_setup(self, seconds: float) -> None:
        """Hold setupComplete back; count (and keep, to process later) what the client sends meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while len(self._early) < MAX_EARLY_MESSAGES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    item = await self._recv()
            except TimeoutError:
                return
            self.record.early_messages += 1
            self._early.append(item)
        await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _send_resumption_update(self) -> None:
        assert self.conversation is not None
        handle = self.emu._issue_handle(self.conversation)
        self.record.handles_issued.append(handle)
        del self.record.handles_issued[:-MAX_HANDLES_PER_RECORD]
        await self._send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    # ------------------------------------------------------------------------------------------------------
    # Client messages after setup
    # ------------------------------------------------------------------------------------------------------

    async def _dispatch(self, message: Any, received: Received) -> None:
        kind, body = normalise_client_message(message, self.record.api_version,
                                              reject_null=not self.rules.null_values)
        if kind == "setup":
            raise invalid(f"{INVALID_ARGUMENT} setup may only be sent once, as the first message; "
                          "got a second setup.")
        if kind == "realtimeInput":
            await self._on_realtime_input(body, received)
        elif kind == "clientContent":
            await self._on_client_content(body)
        elif kind == "toolResponse":
            await self._on_tool_response(body)
        elif kind == "contextUpdate":
            tools = body.get("tools", {}).get("tools")
            if tools is not None:
                self._declare_tools(tools, "contextUpdate.tools.tools")

    async def _on_realtime_input(self, body: dict[str, Any], received: Received) -> None:
        field_name = validate_realtime_input_shape(body)
        value = body[field_name]
        if field_name == "audio":
            pcm, rate = decode_audio_blob(value, "realtimeInput.audio")
            received.pcm, received.pcm_rate = pcm, rate
            await self._on_audio(pcm, rate)
        elif field_name == "mediaChunks":
            if not self.rules.media_chunks:
                raise invalid(MEDIA_CHUNKS_DEPRECATED)
            for index, blob in enumerate(value):
                mime = blob.get("mimeType", "")
                if mime.startswith("image/"):
                    continue
                pcm, rate = decode_audio_blob(blob, f"realtimeInput.mediaChunks[{index}]")
                received.pcm, received.pcm_rate = (received.pcm or b"") + pcm, rate
                await self._on_audio(pcm, rate)
        elif field_name == "video":
            if not value.get("mimeType", "").startswith("image/"):
                raise invalid(f"{INVALID_ARGUMENT} realtimeInput.video.mimeType must be image/* (e.g. image/jpeg).")
        elif field_name in ("activityStart", "activityEnd"):
            if self.aad_enabled:
                raise invalid(f"{INVALID_ARGUMENT} realtimeInput.{field_name} requires "
                              "automaticActivityDetection.disabled=true.")
            if field_name == "activityStart":
                await self._on_activity_start()
            else:
                await self._on_activity_end()
        elif field_name == "audioStreamEnd":
            if not self.aad_enabled:
                raise invalid(f"{INVALID_ARGUMENT} realtimeInput.audioStreamEnd needs automatic activity "
                              "detection enabled.")
            if value:
                await self._on_audio_stream_end()
        elif field_name == "text":
            if self.aad_enabled:
                await self._start_turn("text", text=value)
            elif self._activity is None:
                raise invalid(TEXT_WITHOUT_ACTIVITY)
            else:
                self._activity.add_text(value)  # answered at activityEnd, like an utterance

    async def _on_audio(self, pcm: bytes, rate: int) -> None:
        if self._activity is None:  # AAD disabled and no activity open
            self.record.ignored_audio_chunks += 1
            self.emu.ignored_audio_chunks += 1
            await self.emu._changed()
            return
        self._activity.add(pcm, rate, self.config.max_activity_seconds)

    async def _on_activity_start(self) -> None:
        if self._reply_running() and self.interrupts:
            await self._interrupt()
        if self._activity is not None:
            self.record.activity_restarts += 1
            await self.emu._changed()
        self._activity = _ActivityAudio()

    async def _on_activity_end(self) -> None:
        activity, self._activity = self._activity, None
        if activity is None or (activity.empty and not activity.texts):
            raise invalid(NO_TURN)
        if activity.empty:
            await self._start_turn("text", text=" ".join(activity.texts), truncated=activity.truncated)
            return
        await self._start_audio_turn(activity)

    async def _on_audio_stream_end(self) -> None:
        activity = self._activity
        self._activity = _ActivityAudio()
        if activity is not None and not activity.empty:
            await self._start_audio_turn(activity)

    async def _start_audio_turn(self, activity: _ActivityAudio) -> None:
        pcm16 = await asyncio.to_thread(activity.to_16k)
        text = " ".join(activity.texts) if activity.texts else None
        await self._start_turn("audio", pcm16=pcm16, text=text, truncated=activity.truncated)

    async def _on_client_content(self, body: dict[str, Any]) -> None:
        for index, turn in enumerate(body.get("turns", [])):
            role = turn.get("role", "user")
            if role not in ("user", "model"):
                raise invalid(f"{INVALID_ARGUMENT} clientContent.turns[{index}].role must be \"user\" or "
                              f"\"model\", got {json.dumps(role)[:30]}.")
            parts = turn.get("parts", [])
            if not parts:
                raise invalid(f"{INVALID_ARGUMENT} clientContent.turns[{index}].parts must not be empty.")
            texts = [part["text"] for part in parts if "text" in part]
            if role == "user" and texts:
                self._pending_user_text = " ".join(texts)
            elif role == "model":
                self._pending_user_text = None
        if body.get("turnComplete", False):
            text, self._pending_user_text = self._pending_user_text, None
            if text is None:
                raise invalid(NO_TURN)
            await self._start_turn("clientContent", text=text)

    async def _on_tool_response(self, body: dict[str, Any]) -> None:
        responses = body.get("functionResponses", [])
        if not responses:
            raise invalid(f"{INVALID_ARGUMENT} toolResponse.functionResponses is empty.")
        seen: set[str] = set()
        for index, response in enumerate(responses):
            where = f"toolResponse.functionResponses[{index}]"
            call_id = response.get("id")
            if not call_id:
                raise invalid(f"{INVALID_ARGUMENT} {where}.id is required on the Gemini API.")
            call = self._pending_calls.get(call_id)
            if call is None or call_id in seen:
                raise invalid(f"{where}.id {json.dumps(call_id)[:40]} is not a pending function call "
                              "(unknown, answered or cancelled).")
            if response.get("name") != call.name:
                raise invalid(f"{where}.name {json.dumps(response.get('name'))[:30]} does not match the call's "
                              f"name {json.dumps(call.name)[:30]}.")
            seen.add(call_id)
        finished: list[_ToolRound] = []
        for response in responses:
            call = self._pending_calls[response["id"]]
            call.turn.tool_responses.append(response)
            if call.round.non_blocking and response.get("willContinue") is True:
                continue  # more answers to this call will follow; it stays pending
            del self._pending_calls[response["id"]]
            if response.get("scheduling") != "SILENT":
                call.round.silent = False
            if not any(other.round is call.round for other in self._pending_calls.values()):
                if call.round not in finished:
                    finished.append(call.round)
        for tool_round in finished:
            tool_round.answered.set()
            if tool_round.awaiting:  # the first part is over: speak the results now (or after the current reply)
                tool_round.awaiting = False
                self._queue_reply(tool_round.turn, lambda turn, r=tool_round: self._follow_up(turn, r))
        await self.emu._changed()

    # ------------------------------------------------------------------------------------------------------
    # Turns and replies
    # ------------------------------------------------------------------------------------------------------

    def _reply_running(self) -> bool:
        return any(not task.done() for task in self._reply_tasks)

    async def _start_turn(self, source: Literal["audio", "text", "clientContent"], *, pcm16: bytes = b"",
                          text: str | None = None,
                          truncated: bool = False) -> None:
        if self._reply_running() and (self.interrupts or source != "audio"):
            await self._interrupt()
        if text is None:
            seconds = len(pcm16) / 2 / INPUT_RATE
            text = self.scenario.transcript if self.scenario.transcript is not None else f"({seconds:.1f} s of audio)"
        turn = TurnRecord(self.record.id, source, user_pcm=pcm16, input_text=text, audio_truncated=truncated)
        self._check_queue_room()
        await self.emu._add_turn(turn)
        self._queue_reply(turn, self._send_reply)

    def _check_queue_room(self) -> None:
        self._reply_tasks = [task for task in self._reply_tasks if not task.done()]
        if len(self._reply_tasks) >= self.config.max_queued_replies:
            raise ProtocolViolation(1011, INTERNAL_ERROR)  # bounded: a client that floods turns is cut off

    def _queue_reply(self, turn: TurnRecord, body: Callable[[TurnRecord], Awaitable[None]]) -> None:
        """Run ``body(turn)`` as the next reply, after the ones already queued (one speaks at a time)."""
        self._check_queue_room()
        previous = self._reply_tasks[-1] if self._reply_tasks else None
        task = self._spawn(self._reply(turn, previous, body))
        self._reply_tasks.append(task)
        self._queued_turns[task] = turn
        task.add_done_callback(lambda done: self._queued_turns.pop(done, None))

    async def _interrupt(self) -> None:
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
        await self._send({"serverContent": {"interrupted": True}})
        cancelled = [call_id for call_id, call in self._pending_calls.items()
                     if call.turn is turn and not call.round.non_blocking]
        for call_id in cancelled:
            self._pending_calls.pop(call_id).answered.set()
        if cancelled:
            turn.cancelled_tool_calls.extend(cancelled)
            await self._send({"toolCallCancellation": {"ids": cancelled}})
        still_running = next((call.round for call in self._pending_calls.values() if call.turn is turn), None)
        if still_running is not None:
            still_running.awaiting = True
        if self.scenario.barge_in_turn_complete:
            await self._finish_turn(turn, None if still_running else "interrupted")
        elif still_running is None:
            await self._end_turn(turn, "interrupted_no_turn_complete")

    async def _reply(self, turn: TurnRecord, previous: asyncio.Task[None] | None,
                     body: Callable[[TurnRecord], Awaitable[None]]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        self._current_turn = turn
        try:
            await body(turn)
        finally:
            if self._current_turn is turn:
                self._current_turn = None

    async def _send_reply(self, turn: TurnRecord) -> None:
        if self.faults and self.scenario.malformed_before_reply and not self._malformed_sent:
            self._malformed_sent = True
            await self._send(MALFORMED_FRAME)
        if self.faults and self.scenario.unknown_message_before_reply and not self._unknown_sent:
            self._unknown_sent = True
            await self._send({"emulatorUnknownMessage": {"note": "clients should log and ignore unknown messages"}})
        if self.input_transcription:
            await self._send({"serverContent": {"inputTranscription": {"text": turn.input_text, "finished": True}}})
        if self.scenario.reply == "silent":
            await asyncio.Event().wait()  # a stalled service: the turn never gets an answer
        tool_round = await self._make_tool_calls(turn)
        if tool_round is not None and not tool_round.non_blocking:
            await tool_round.answered.wait()
            if self.scenario.cancel_tool_calls:
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

    async def _follow_up(self, turn: TurnRecord, tool_round: _ToolRound) -> None:
        """After a NON_BLOCKING turn's calls are answered: speak about the results, then end IDLE."""
        cancelled = False
        if self.scenario.cancel_tool_calls:
            await self._cancel_answered(tool_round)
            cancelled = True
        if not (tool_round.silent or cancelled):
            await self._speak(turn)
        await self._finish_turn(turn, "complete")

    async def _cancel_answered(self, tool_round: _ToolRound) -> None:
        # the model dropped the calls (newer input superseded them): the client should undo them
        tool_round.turn.cancelled_tool_calls.extend(tool_round.ids)
        await self._send({"toolCallCancellation": {"ids": list(tool_round.ids)}})

    def _behavior_of(self, name: str) -> Literal["BLOCKING", "NON_BLOCKING"]:
        """How the model schedules a call: the declaration if it says, else the scenario or model default."""
        if not self.rules.non_blocking_calls:
            return "BLOCKING"
        declared = self.behaviors.get(name)
        if declared is None:
            declared = "NON_BLOCKING" if self.scenario.non_blocking_tools else self.rules.default_behavior
        return "NON_BLOCKING" if declared == "NON_BLOCKING" else "BLOCKING"

    async def _make_tool_calls(self, turn: TurnRecord) -> _ToolRound | None:
        calls: list[dict[str, Any]] = []
        for name, args in self.scenario.tool_calls:
            if name not in self.declared_functions:
                turn.skipped_tool_calls.append(name)  # a real model never calls an undeclared function
                continue
            calls.append({"id": f"fc-{uuid.uuid4().hex[:12]}", "name": name, "args": args})
        if not calls:
            return None
        # one toolCall message per turn; if any call in it is BLOCKING, the model waits for all of them
        non_blocking = all(self._behavior_of(str(call["name"])) == "NON_BLOCKING" for call in calls)
        tool_round = _ToolRound(turn, [str(call["id"]) for call in calls], non_blocking)
        for call in calls:
            self._pending_calls[str(call["id"])] = _PendingCall(str(call["name"]), turn, tool_round)
        turn.tool_calls.extend(calls)
        turn.tool_behavior = "NON_BLOCKING" if non_blocking else "BLOCKING"
        await self.emu._changed()
        await self._send({"toolCall": {"functionCalls": calls}})
        return tool_round

    async def _speak(self, turn: TurnRecord) -> None:
        audio = await self._reply_audio(turn)
        await self._stream_audio(turn, audio)
        turn.generation_complete = True
        await self._send({"serverContent": {"generationComplete": True}})

    async def _reply_audio(self, turn: TurnRecord) -> bytes:
        if self.scenario.reply == "echo" and turn.user_pcm:
            return await asyncio.to_thread(resample_pcm16, turn.user_pcm, INPUT_RATE, OUTPUT_RATE)
        return await asyncio.to_thread(tone_pcm, self.scenario.tone_seconds, self.scenario.tone_hz)

    def _reply_transcript(self, turn: TurnRecord, seconds: float) -> str:
        if self.scenario.reply_text is not None:
            return self.scenario.reply_text
        if self.scenario.reply == "echo" and turn.user_pcm:
            return f"(echo of {seconds:.1f} s of audio)"
        return f"({self.scenario.tone_hz:g} Hz tone, {seconds:.1f} s)"

    async def _drop_if_due(self, sent_chunks: int, total_chunks: int) -> None:
        fraction = self._drop_fraction
        if fraction is not None and sent_chunks >= fraction * total_chunks:
            self._drop_fraction = None
            await self.drop()
            raise _Ended

    async def _stream_audio(self, turn: TurnRecord, audio: bytes) -> None:
        chunk_bytes = max(2, int(OUTPUT_RATE * self.config.chunk_ms / 1000) * 2)
        chunks = [audio[i:i + chunk_bytes] for i in range(0, len(audio), chunk_bytes)]
        fragments: dict[int, str] = {}
        if self.output_transcription and chunks:
            words = self._reply_transcript(turn, len(audio) / 2 / OUTPUT_RATE).split(" ")
            for index, word in enumerate(words):
                text = word if index == len(words) - 1 else word + " "
                slot = index * len(chunks) // len(words)
                fragments[slot] = fragments.get(slot, "") + text
        loop = asyncio.get_running_loop()
        start = loop.time()
        pace = self.config.pace
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
            await self._send({"serverContent": content})
            await self.emu._changed()
        await self._drop_if_due(len(chunks), len(chunks))

    def _b64(self, data: bytes) -> str:
        encoder = base64.urlsafe_b64encode if self.scenario.urlsafe_b64 else base64.b64encode
        return encoder(data).decode("ascii")

    async def _finish_turn(self, turn: TurnRecord, ending: TurnEnding | None) -> None:
        """Send a turnComplete; ``ending`` None means more of this turn follows (IN_PROGRESS)."""
        prompt_tokens = round(len(turn.user_pcm) / 2 / INPUT_RATE * AUDIO_TOKENS_PER_SECOND)
        prompt_tokens += max(0, len(turn.input_text) // 4) if turn.source != "audio" else 0
        response_tokens = round(len(turn.reply_pcm) / 2 / OUTPUT_RATE * AUDIO_TOKENS_PER_SECOND)
        content: dict[str, Any] = {"turnComplete": True}
        status: str | None = None
        if self.scenario.interaction_status or turn.tool_behavior == "NON_BLOCKING":
            status = "IDLE" if ending is not None else "IN_PROGRESS"
            content["interactionStatus"] = status
        turn.turn_completes.append(status)
        if ending is not None:
            turn.turn_complete = True
            turn.ending = ending
            if self.conversation is not None:
                self.conversation.turns += 1
        await self._send({"serverContent": content, "usageMetadata": {
            "promptTokenCount": prompt_tokens, "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_tokens + response_tokens}})
        await self.emu._changed()
        if self.resumption:
            await self._send_resumption_update()

    async def _end_turn(self, turn: TurnRecord, ending: TurnEnding) -> None:
        """End a turn without a turnComplete (barge-in with ``barge_in_turn_complete`` off)."""
        turn.ending = ending
        if self.conversation is not None:
            self.conversation.turns += 1
        await self.emu._changed()
        if self.resumption:
            await self._send_resumption_update()
