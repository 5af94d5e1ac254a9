"""One emulated Live API session: the reader loop, setup, what the client sends, and faults from outside.

The reader loop (``ConnectionHandler.run``) validates every client frame and reacts; replies are played
by a ``ReplyPlayer`` in tasks of their own, so that an ``activityStart`` can cut them off mid-stream, as
on the real service. The connection knows the server only as a ``Host`` (settings, the records sink,
resumption handles), never the server itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from appliance.emulator.activity import ActivityAudio
from appliance.emulator.host import Host
from appliance.emulator.playback import ReplyPlayer
from appliance.emulator.records import ConnectionRecord, Received
from appliance.emulator.rejections import (
    DEADLINE_EXPIRED,
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    INVALID_KEY,
    MEDIA_CHUNKS_DEPRECATED,
    NO_TURN,
    SESSION_NOT_FOUND,
    TEXT_WITHOUT_ACTIVITY,
    UNREGISTERED_CALLER,
    ProtocolViolation,
    invalid,
)
from appliance.emulator.scenario import Scenario
from appliance.emulator.schema import decode_audio_blob, normalise_client_message, validate_realtime_input_shape
from appliance.emulator.setup_message import SessionOptions, declare_tools, read_setup
from appliance.emulator.wire import MALFORMED_FRAME, Ended, Wire

__all__ = ["ConnectionHandler"]

MAX_EARLY_MESSAGES = 256  # messages buffered while a slow setup is pending; the rest wait in the socket


def _duration_text(seconds: float) -> str:
    """proto3 JSON Duration text: "50s", "1.5s"."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


class ConnectionHandler:
    def __init__(self, host: Host, ws: ServerConnection, record: ConnectionRecord, scenario: Scenario,
                 *, faults: bool, key_rejected: bool) -> None:
        self.host = host
        self.config = host.config
        self.record = record
        self.scenario = scenario
        self.faults = faults
        self._key_rejected = key_rejected
        self.wire = Wire(ws, record, host.journal, scenario, faults=faults,
                         close_timeout_s=self.config.close_timeout_s)
        self.player = ReplyPlayer(self.wire, host, record, scenario, faults=faults)
        self._activity: ActivityAudio | None = None  # open activity (AAD off) or the rolling buffer (AAD on)
        self._pending_user_text: str | None = None
        self._early: list[tuple[Any, Received]] = []

    @property
    def options(self) -> SessionOptions:
        """What setup asked for (the defaults until it is read)."""
        return self.player.options

    # ------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.wire.is_open

    async def run(self) -> None:
        try:
            self.wire.spawn(self._lifetime())
            if self.faults and self.scenario.drop_after == 0:
                await self.drop()
                return
            if self.faults and self.scenario.close_after == 0:
                raise ProtocolViolation(self.scenario.close_code, self.scenario.close_reason)
            message, received = await self.wire.recv()
            await self._handle_setup(message)
            for message, received in self._early:
                await self._dispatch(message, received)
            self._early.clear()
            while True:
                message, received = await self.wire.recv()
                await self._dispatch(message, received)
        except ProtocolViolation as violation:
            await self.close(violation.code, violation.reason)
        except (ConnectionClosed, Ended):
            pass
        except Exception:  # an emulator bug: say so loudly, never leave the client hanging
            self.wire.internal_error()
            await self.close(1011, INTERNAL_ERROR)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        await self.wire.shutdown()
        self.player.tool_calls.release_all()
        self.host.journal.mark_disconnected(self.record.id)
        conversation = self.player.conversation
        if conversation is not None and conversation.handler is self:
            conversation.handler = None

    async def close(self, code: int, reason: str) -> None:
        """Close with a close frame (server side); recorded before the handshake completes."""
        await self.wire.close(code, reason)

    async def drop(self) -> None:
        """Drop the TCP connection without a close frame: the client sees 1006."""
        await self.wire.drop()

    async def _lifetime(self) -> None:
        lifetime = self.config.connection_lifetime_s
        if lifetime is None:
            return
        await asyncio.sleep(lifetime)
        grace = self.config.goaway_grace_s
        if self.record.setup_complete:
            await self.wire.send({"goAway": {"timeLeft": _duration_text(grace)}})
        await self._deadline(grace)

    async def _deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.close(1011, DEADLINE_EXPIRED)

    # ------------------------------------------------------------------------------------------------------
    # Faults injected from outside (Emulator methods, called by tests on the same loop)
    # ------------------------------------------------------------------------------------------------------

    async def inject_go_away(self, time_left_s: float, close_after: bool) -> bool:
        """goAway now; then (close_after) the 1011 "Deadline expired" close once ``time_left_s`` has passed."""
        sent = await self.wire.send_injected({"goAway": {"timeLeft": _duration_text(time_left_s)}})
        if sent and close_after:
            self.wire.spawn(self._deadline(time_left_s))
        return sent

    async def inject_malformed(self) -> bool:
        """One truncated JSON frame now; a client must log it and carry on."""
        return await self.wire.send_injected(MALFORMED_FRAME)

    def arm_drop_mid_reply(self, fraction: float) -> None:
        """Drop the TCP connection once ``fraction`` of the reply now streaming (or the next one) is out."""
        self.player.arm_drop_mid_reply(fraction)

    # ------------------------------------------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------------------------------------------

    async def _handle_setup(self, message: Any) -> None:
        if not self.record.has_key:
            raise ProtocolViolation(1008, UNREGISTERED_CALLER)
        if self._key_rejected:
            raise ProtocolViolation(1008, INVALID_KEY)
        options = read_setup(message, self.record.api_version, self.config)
        self.player.options = options
        self._attach_conversation(options.resume_handle, options.model_id)
        self.record.setup = options.setup
        self.record.model = options.model_id
        if options.aad_enabled:
            self._activity = ActivityAudio()
        journal = self.host.journal
        await journal.changed()

        if self.faults and self.scenario.reject_setup is not None:
            raise ProtocolViolation(*self.scenario.reject_setup)
        if self.faults and self.scenario.setup_delay_s > 0:
            await self._delay_setup(self.scenario.setup_delay_s)
        await self.wire.send({"setupComplete": {}})
        self.record.setup_complete = True
        await journal.changed()
        if options.resumption:
            await self.player.send_resumption_update()
        if self.faults and self.scenario.close_after_setup:
            raise ProtocolViolation(self.scenario.close_code, self.scenario.close_reason)

    def _attach_conversation(self, handle: str | None, model_id: str) -> None:
        conversations = self.host.conversations
        if handle:
            conversation = conversations.find(handle)
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
            conversation = conversations.new(model_id)
        conversation.handler = self
        self.player.conversation = conversation

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
                    item = await self.wire.recv()
            except TimeoutError:
                return
            self.record.early_messages += 1
            self._early.append(item)
        await asyncio.sleep(max(0.0, deadline - loop.time()))

    # ------------------------------------------------------------------------------------------------------
    # Client messages after setup
    # ------------------------------------------------------------------------------------------------------

    async def _dispatch(self, message: Any, received: Received) -> None:
        kind, body = normalise_client_message(message, self.record.api_version,
                                              reject_null=not self.options.rules.null_values)
        if kind == "setup":
            raise invalid(f"{INVALID_ARGUMENT} setup may only be sent once, as the first message; "
                          "got a second setup.")
        if kind == "realtimeInput":
            await self._on_realtime_input(body, received)
        elif kind == "clientContent":
            await self._on_client_content(body)
        elif kind == "toolResponse":
            await self.player.take_tool_responses(body.get("functionResponses", []))
        elif kind == "contextUpdate":
            tools = body.get("tools", {}).get("tools")
            if tools is not None:
                declared = declare_tools(tools, "contextUpdate.tools.tools", self.options.rules)
                self.player.options = dataclasses.replace(self.options, tools=declared)

    async def _on_realtime_input(self, body: dict[str, Any], received: Received) -> None:
        field_name = validate_realtime_input_shape(body)
        value = body[field_name]
        aad_enabled = self.options.aad_enabled
        if field_name == "audio":
            pcm, rate = decode_audio_blob(value, "realtimeInput.audio")
            received.pcm, received.pcm_rate = pcm, rate
            await self._on_audio(pcm, rate)
        elif field_name == "mediaChunks":
            if not self.options.rules.media_chunks:
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
            if aad_enabled:
                raise invalid(f"{INVALID_ARGUMENT} realtimeInput.{field_name} requires "
                              "automaticActivityDetection.disabled=true.")
            if field_name == "activityStart":
                await self._on_activity_start()
            else:
                await self._on_activity_end()
        elif field_name == "audioStreamEnd":
            if not aad_enabled:
                raise invalid(f"{INVALID_ARGUMENT} realtimeInput.audioStreamEnd needs automatic activity "
                              "detection enabled.")
            if value:
                await self._on_audio_stream_end()
        elif field_name == "text":
            if aad_enabled:
                await self.player.start_turn("text", text=value)
            elif self._activity is None:
                raise invalid(TEXT_WITHOUT_ACTIVITY)
            else:
                self._activity.add_text(value)  # answered at activityEnd, like an utterance

    async def _on_audio(self, pcm: bytes, rate: int) -> None:
        if self._activity is None:  # AAD disabled and no activity open
            self.record.ignored_audio_chunks += 1
            self.host.journal.audio_ignored()
            await self.host.journal.changed()
            return
        self._activity.add(pcm, rate, self.config.max_activity_seconds)

    async def _on_activity_start(self) -> None:
        if self.player.reply_running() and self.options.interrupts:
            await self.player.interrupt()
        if self._activity is not None:
            self.record.activity_restarts += 1
            await self.host.journal.changed()
        self._activity = ActivityAudio()

    async def _on_activity_end(self) -> None:
        activity, self._activity = self._activity, None
        if activity is None or (activity.empty and not activity.texts):
            raise invalid(NO_TURN)
        if activity.empty:
            await self.player.start_turn("text", text=" ".join(activity.texts), truncated=activity.truncated)
            return
        await self._start_audio_turn(activity)

    async def _on_audio_stream_end(self) -> None:
        activity = self._activity
        self._activity = ActivityAudio()
        if activity is not None and not activity.empty:
            await self._start_audio_turn(activity)

    async def _start_audio_turn(self, activity: ActivityAudio) -> None:
        pcm16 = await asyncio.to_thread(activity.to_16k)
        text = " ".join(activity.texts) if activity.texts else None
        await self.player.start_turn("audio", pcm16=pcm16, text=text, truncated=activity.truncated)

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
            await self.player.start_turn("clientContent", text=text)
