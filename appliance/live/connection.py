"""A Live API session that stays up for the life of the daemon.

`LiveSession` owns one WebSocket at a time.  It sends `setup`, waits for
`setupComplete`, then passes the server's events to its owner through a bounded
queue.  Behind that it keeps the newest resumption handle and reconnects by
itself: proactively after `goAway` (at the first moment no turn is in flight),
and with backoff after a drop.  A user's question is never silently lost across
a reconnect: one the server has not shown it heard is replayed on the new socket.
Which turn each server event belongs to, and how each turn ended, is decided by
`conversation.Conversation`, which the session feeds with everything it sends
and receives; the owner gets `Attributed` events and `TurnEnded`.

Everything runs on the caller's asyncio loop; no method blocks it.

Longer than usual because sending a question and running the connection loop share one
socket and its generation counter: each send checks which connection the held question
went out on, and each new connection replays it.  The pure parts live beside it:
`link` (states, close kinds, retry delays), `held` (the question kept for replay),
`conversation` (turn identity), `parser` and `messages` (the codec).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from appliance.live.channel import OrderedChannel
from appliance.live.endpoint import check_endpoint
from appliance.settings.secrets import RedactingFilter, Secret
from appliance.textsafe import escape_controls
from appliance.live import messages as p
from appliance.live import cleaning
from appliance.live.parser import parse_server_frame
from appliance.live.conversation import TURN_EVENTS, Attributed, Conversation, Origin, TurnEnded
from appliance.live.backoff import Backoff
from appliance.live.held import HeldActivity
from appliance.live.link import CloseKind, LinkChanged, LinkState, Retry, classify_close
from appliance.live.profiles import ModelProfile, profile_for

log = logging.getLogger(__name__)
#: the websockets library logs handshake headers at debug level; its records go
#: through this logger, whose filter removes every session's key
wire_log = logging.getLogger("appliance.live.wire")
_wire_redactor = RedactingFilter()
wire_log.addFilter(_wire_redactor)

#: a question that could not be sent is dropped when the link is down longer than this
STALE_TURN_S = 20.0
#: server events waiting for the owner; past it the socket reader waits (backpressure).
#: Link changes and turn ends are never held back or dropped.
EVENT_QUEUE_SIZE = 512
#: text and history messages waiting for the link; the oldest is dropped past this
OUTBOX_SIZE = 8
MAX_FRAME_BYTES = 4 * 1024 * 1024


SessionEvent = p.ServerEvent | LinkChanged | Attributed | TurnEnded


@dataclass
class SessionStats:
    connections: int = 0
    resumed: int = 0
    audio_outside_activity: int = 0
    empty_activities: int = 0
    dropped_tool_responses: int = 0
    protocol_errors: int = 0
    #: server events of replies the user abandoned, not passed on
    residue_events: int = 0
    replayed_turns: int = 0


@dataclass(frozen=True)
class SessionOptions:
    setup_timeout_s: float = 10.0
    keepalive_interval_s: float = 20.0
    keepalive_timeout_s: float = 60.0
    auth: str = "api_key"  # or "ephemeral"
    user_agent: str = "appliance/0.1"
    #: a question with no reply event for this long ends as timed_out
    reply_timeout_s: float = 20.0


class LiveSession:
    """A self-healing Live API connection; see the module docstring."""

    def __init__(
        self,
        url: str,
        settings: p.SessionSettings,
        api_key: Secret | None,
        options: SessionOptions = SessionOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
        transient: Backoff | None = None,
        config_errors: Backoff | None = None,
    ) -> None:
        check_endpoint(url)
        self.url = url
        self.settings = settings
        self.profile: ModelProfile = profile_for(settings.model)
        if not self.profile.known:
            log.warning(
                "model %s is not one this version knows; sending only the fields every Live model accepts",
                self.profile.name,
            )
        self._key = api_key
        if api_key is not None:
            _wire_redactor.add(api_key)
        self._options = options
        self._clock = clock
        self._retry = Retry(transient=transient, config_errors=config_errors)

        self.state = LinkState.CLOSED
        self.last_error: str = ""
        self.handle: str | None = None
        self.stats = SessionStats()
        self.connected_at: float | None = None
        self.conversation_started_at: float | None = None
        #: the one owner of turn identity; read it, never write it from outside
        self.conversation = Conversation(reply_timeout_s=options.reply_timeout_s, stale_s=STALE_TURN_S)

        self._events: OrderedChannel[SessionEvent] = OrderedChannel(EVENT_QUEUE_SIZE)
        self._ws: ClientConnection | None = None
        self._gen = 0
        self._task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._handoff_task: asyncio.Task[None] | None = None
        self._closer_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._deadline_changed = asyncio.Event()
        #: the deadline the turn clock sleeps until (None: no deadline)
        self._armed_deadline: float | None = None
        self._state_changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._fresh_next = False

        self._activity: HeldActivity | None = None
        self._outbox: deque[dict[str, Any]] = deque()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin connecting in the background; events tell how it goes."""
        if self._task is None:
            self._closing = False
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._supervise(), name="live-session")
            self._clock_task = loop.create_task(self._turn_clock(), name="live-turn-clock")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The session's long-lived tasks, for the owner's supervisor."""
        return [t for t in (self._task, self._clock_task) if t is not None]

    async def wait_ready(self, timeout: float) -> bool:
        """True once a connection is set up; False on timeout or a configuration error."""
        deadline = self._clock() + timeout
        while self.state is not LinkState.READY:
            if self.state is LinkState.ERROR:
                return False
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._state_changed.clear()
            try:
                await asyncio.wait_for(self._state_changed.wait(), remaining)
            except TimeoutError:
                return self.state is LinkState.READY
        return True

    async def close(self) -> None:
        """Close with 1000 and stop reconnecting."""
        self._closing = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            await ws.close(1000, "client closing")
        for task in (self._handoff_task, self._closer_task, self._clock_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._clock_task = None
        self._set_state(LinkState.CLOSED, "closed by the appliance")

    def new_conversation(self) -> None:
        """Forget the conversation: the next connection starts without a handle."""
        self._emit_ended(self.conversation.new_conversation(self._clock()))
        self._activity = None
        self.handle = None
        self._fresh_next = True
        ws = self._ws
        if ws is not None and (self._closer_task is None or self._closer_task.done()):
            self._closer_task = asyncio.get_running_loop().create_task(
                ws.close(1000, "new conversation"), name="live-close-for-new-conversation"
            )
        else:
            self._wake.set()

    def try_now(self) -> None:
        """Skip the rest of the backoff and try at once (someone pressed the button)."""
        if self.state in (LinkState.OFFLINE, LinkState.CONNECTING):
            self._retry.skip_wait()
            self._wake.set()

    async def next_event(self, timeout: float | None = None) -> SessionEvent:
        if timeout is None:
            return await self._events.get()
        return await asyncio.wait_for(self._events.get(), timeout)

    def drain_events(self) -> list[SessionEvent]:
        """Everything already queued, without waiting."""
        out: list[SessionEvent] = []
        while len(self._events):
            out.append(self._events.get_nowait())
        return out

    @property
    def busy(self) -> bool:
        """A turn is in flight: the user is speaking, a reply or a tool call is pending."""
        return self.conversation.busy

    # ------------------------------------------------------------------ asking

    async def activity_start(self) -> int:
        """The user started speaking; returns the new turn's id.

        Nothing goes on the wire until the first audio: an activity that never gets
        any is never opened, so the service never sees an empty turn.  Starting a
        new activity cuts the reply in flight (the service does the same on its side).
        """
        now = self._clock()
        if self._activity is not None and self._activity.ended_at is not None and self._activity.end_sent_on is None:
            log.info("an undelivered question is replaced by a new one")
        turn, ended = self.conversation.start_activity(now)
        self._emit_ended(ended)
        self._activity = HeldActivity(turn=turn, started=now)
        self._changed()
        return turn

    async def send_audio(self, pcm: bytes) -> None:
        """16 kHz s16le mono audio of the current activity; outside one it is dropped."""
        act = self._activity
        if act is None or act.ended_at is not None:
            self.stats.audio_outside_activity += 1
            return
        if not pcm:
            return
        act.add(pcm)
        if self.state is not LinkState.READY:
            return
        if act.live_on == self._gen:
            if not await self._send(p.audio_input(pcm)):
                act.live_on = None
        elif not act.catching_up:
            await self._catch_up(act)

    async def activity_end(self) -> bool:
        """The user stopped; True when a turn was submitted (or will be, once online).

        An activity without audio ends here: it was never opened on the wire.
        """
        act = self._activity
        if act is None or act.ended_at is not None:
            return False
        now = self._clock()
        act.ended_at = now
        ended = self.conversation.end_activity(now, has_content=act.has_content)
        if not act.has_content:
            self.stats.empty_activities += 1
            self._activity = None
            self._emit_ended(ended)
            log.info("press without audio: nothing sent to the model")
            return False
        if self.state is LinkState.READY:
            if act.live_on == self._gen:
                await self._finish(act)
            elif not act.catching_up:
                await self._catch_up(act)
        self._changed()
        return True

    async def send_text(self, text: str) -> int:
        """A typed question; returns its turn id.

        With automatic activity detection off, the service needs the activity
        signals for every turn, so the text goes inside activityStart/activityEnd.
        (`clientContent` would also do, but mid-session clientContent has been
        reported to close 3.1 sessions with 1007; the activity form works on all.)
        The question is replayed after a drop like a spoken one.
        """
        now = self._clock()
        turn, ended = self.conversation.start_activity(now, Origin.TEXT)
        self._emit_ended(ended)
        act = HeldActivity(turn=turn, started=now, text=text, ended_at=now)
        self._activity = act
        self.conversation.end_activity(now, has_content=True)
        if self.state is LinkState.READY:
            await self._catch_up(act)
        self._changed()
        return turn

    async def send_client_content(self, turns: Sequence[tuple[str, str]], turn_complete: bool = False) -> None:
        """Context for the model (history), not a question: it starts no turn."""
        await self._send_or_queue(p.client_content(turns, turn_complete))

    def cut_reply(self, why: str) -> list[TurnEnded]:
        """The user abandoned the reply in flight (a press, `ctl stop`); the rest of it is dropped."""
        ended = self.conversation.cut(self._clock(), why)
        for e in ended:
            self._release(e.turn)
        self._changed()
        return ended

    async def send_tool_response(self, responses: Sequence[p.FunctionResponse]) -> int:
        """Answer function calls of the current connection; returns how many were sent.

        A call issued on a connection that has since closed cannot be answered on
        a new one (the service would reject the unknown id), so such answers are
        dropped with a warning; every other answer is sent, never queued or lost.
        """
        pending = self.conversation.pending_calls
        valid = [r for r in responses if r.id in pending]
        dropped = len(responses) - len(valid)
        if dropped:
            self.stats.dropped_tool_responses += dropped
            log.warning("dropped %d tool response(s) for calls of a closed connection", dropped)
        if not valid or self.state is not LinkState.READY:
            if valid:
                self.stats.dropped_tool_responses += len(valid)
                log.warning("link down: %d tool response(s) could not be sent", len(valid))
            return 0
        sent = await self._send(p.tool_response(valid))
        if sent:
            self.conversation.tool_response_sent([r.id for r in valid], self._clock())
            self._changed()
            return len(valid)
        return 0

    async def _send_or_queue(self, message: dict[str, Any]) -> None:
        if self.state is LinkState.READY and await self._send(message):
            return
        if len(self._outbox) >= OUTBOX_SIZE:
            self._outbox.popleft()
            log.warning("outbox full: dropped the oldest queued history message")
        self._outbox.append(message)

    async def _send(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(p.encode(message))
            return True
        except ConnectionClosed:
            return False  # the reader notices the close and reconnects

    async def _catch_up(self, act: HeldActivity) -> None:
        """Put a question on the current connection: start, everything so far, end if ended."""
        act.catching_up = True
        try:
            gen = self._gen
            if act.start_sent_on != gen:
                if not await self._send(p.activity_start()):
                    return
                act.start_sent_on = gen
                if act.text is not None:
                    if not await self._send(p.text_input(act.text)):
                        return
                if act.stored_bytes < act.audio_bytes:
                    log.warning("question longer than the replay buffer: its end is replayed partially")
                i = 0
                while i < len(act.chunks):  # chunks added while this awaits are sent too
                    if not await self._send(p.audio_input(act.chunks[i])) or self._gen != gen:
                        return
                    i += 1
            act.live_on = gen
            if act.ended_at is not None:
                await self._finish(act)
        finally:
            act.catching_up = False

    async def _finish(self, act: HeldActivity) -> None:
        """Send activityEnd; the question is kept until the server shows it heard it.

        A send that "succeeds" into a socket that is already dead loses the turn, so
        the question is only forgotten once the server answers it; a reconnect
        before that replays it.
        """
        if act.end_sent_on == self._gen:
            return
        if await self._send(p.activity_end()):
            act.end_sent_on = self._gen
            self.conversation.delivered(self._clock())
            self._changed()
        else:
            act.live_on = None

    # ------------------------------------------------------------------ turn bookkeeping

    def _release(self, turn: int) -> None:
        """The stored question of `turn` is no longer needed."""
        if self._activity is not None and self._activity.turn == turn:
            self._activity = None

    def _emit_ended(self, ended: Sequence[TurnEnded]) -> None:
        for e in ended:
            self._release(e.turn)
            self._events.put_control(e)
        if ended:
            self._changed()

    def _changed(self) -> None:
        """The conversation changed: re-check the handoff and the turn clock."""
        if self.busy:
            self._idle.clear()
        else:
            self._idle.set()
        # Wake the clock only for an earlier deadline: one that moved later (every reply
        # chunk moves it) is noticed when the clock wakes for the old one.
        new = self.conversation.next_deadline()
        armed = self._armed_deadline
        if new is not None and (armed is None or new < armed):
            self._deadline_changed.set()

    async def _turn_clock(self) -> None:
        """Ends questions whose reply never came and ones held offline too long."""
        while True:
            self._deadline_changed.clear()
            deadline = self._armed_deadline = self.conversation.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                await asyncio.wait_for(self._deadline_changed.wait(), timeout)
                continue
            except TimeoutError:
                pass
            ended = self.conversation.poll(self._clock())
            for e in ended:
                log.warning("turn %d %s: %s", e.turn, e.outcome.value, e.detail)
            self._emit_ended(ended)

    # ------------------------------------------------------------------ connection loop

    async def _supervise(self) -> None:
        try:
            while not self._closing:
                try:
                    kind, code, reason = await self._connect_and_serve()
                except Exception:  # a bug here must not end the appliance's link for good
                    log.exception("unexpected failure in the connection loop; reconnecting")
                    kind, code, reason = CloseKind.TRANSIENT, None, "internal error"
                if self._closing:
                    break
                delay = self._delay_for(kind, code, reason)
                if delay > 0:
                    await self._sleep(delay)
        finally:
            self._ws = None

    def _delay_for(self, kind: CloseKind, code: int | None, reason: str) -> float:
        delay = self._retry.delay_after(kind, held=self.conversation.needs_replay)
        if kind is CloseKind.RESUME:
            self._set_state(LinkState.CONNECTING, reason or "connection handed over", code)
        elif kind is CloseKind.BAD_HANDLE:
            log.warning("the service no longer knows this conversation; starting a fresh one")
            self.handle = None
            self._set_state(LinkState.CONNECTING, reason, code)
        elif kind is CloseKind.CONFIG:
            self.last_error = reason
            self._set_state(LinkState.ERROR, reason, code)
            log.error("the service refused the session (%s): %s; retrying in %.0f s", code, reason, delay)
        else:
            self.last_error = reason
            self._set_state(LinkState.OFFLINE, reason, code)
            log.warning("offline (%s); reconnecting in %.1f s", reason, delay)
        return delay

    async def _sleep(self, delay: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def _connect_and_serve(self) -> tuple[CloseKind, int | None, str]:
        if self._fresh_next:
            self.handle = None
            self._fresh_next = False
        handle = self.handle
        self._set_state(LinkState.CONNECTING, "resuming" if handle else "connecting")
        try:
            ws = await connect(
                self.url,
                additional_headers=self._auth_headers(),
                user_agent_header=self._options.user_agent,
                proxy=None,
                open_timeout=self._options.setup_timeout_s,
                ping_interval=self._options.keepalive_interval_s,
                ping_timeout=self._options.keepalive_timeout_s,
                close_timeout=2.0,
                max_size=MAX_FRAME_BYTES,
                # No permessage-deflate: the frames are base64 PCM, and zlib over 50 of them a
                # second costs more CPU on a Pi Zero than the few KB/s it saves on kitchen Wi-Fi.
                compression=None,
                logger=wire_log,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return CloseKind.TRANSIENT, None, self._redact(f"cannot reach {self._host()}: {_describe(exc)}")

        self._ws = ws
        self._gen += 1
        self.stats.connections += 1
        try:
            outcome = await self._setup(ws, handle)
            if outcome is not None:
                return outcome
            return await self._serve(ws)
        finally:
            self._ws = None
            self.connected_at = None
            self._emit_ended(self.conversation.connection_lost(self._clock()))
            if self._handoff_task is not None:
                self._handoff_task.cancel()
                self._handoff_task = None
            if ws.state.name != "CLOSED":
                await ws.close(1000)

    def _setup_message(self, handle: str | None) -> dict[str, Any]:
        """`setup` with the declarations of this moment; a failing source costs only its own.

        Why guarded: the source is someone else's code (the MCP manager), and a bug there
        must not keep the device from talking at all.
        """
        try:
            return p.build_setup(self.settings, self.profile, handle)
        except Exception:
            if self.settings.function_source is None:
                raise
            log.exception("the function declarations to add failed; this session goes without them")
            alone = dataclasses.replace(self.settings, function_source=None)
            return p.build_setup(alone, self.profile, handle)

    async def _setup(self, ws: ClientConnection, handle: str | None) -> tuple[CloseKind, int | None, str] | None:
        """Send setup and wait for setupComplete; None when the session is ready."""
        try:
            await ws.send(p.encode(self._setup_message(handle)))
            deadline = self._clock() + self._options.setup_timeout_s
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise TimeoutError
                frame = await asyncio.wait_for(ws.recv(decode=False), remaining)
                events = parse_server_frame(frame)
                if any(isinstance(e, p.SetupComplete) for e in events):
                    break
                for event in events:  # anything before setupComplete is noted, not fatal
                    await self._handle_event(event)
        except TimeoutError:
            return (
                CloseKind.TRANSIENT,
                None,
                f"no setupComplete from {self._host()} within {self._options.setup_timeout_s:g} s",
            )
        except ConnectionClosed as exc:
            kind, code, reason = self._closed(exc)
            if handle is not None and kind in (CloseKind.CONFIG, CloseKind.BAD_HANDLE):
                # An expired handle looks like a configuration error; try once without it
                # before blaming the configuration.
                log.warning("resuming was refused (%s %s); trying a fresh conversation", code, reason)
                self.handle = None
                return CloseKind.BAD_HANDLE, code, reason
            return kind, code, reason

        now = self._clock()
        self.connected_at = now
        if handle is not None:
            self.stats.resumed += 1
        else:
            self.conversation_started_at = now
        self._retry.connected()
        self.last_error = ""
        self._set_state(LinkState.READY, "resumed the conversation" if handle else "new conversation")
        await self._deliver_pending()
        return None

    async def _deliver_pending(self) -> None:
        """Replay the question the server may not have heard, then queued history."""
        act = self._activity
        cur = self.conversation.current
        if act is not None and cur is not None and cur.id == act.turn and self.conversation.needs_replay:
            if act.start_sent_on is not None:
                self.stats.replayed_turns += 1
                log.info("asking turn %d again on the new connection", act.turn)
            await self._catch_up(act)
        while self._outbox and self.state is LinkState.READY:
            if not await self._send(self._outbox[0]):
                return
            self._outbox.popleft()

    async def _serve(self, ws: ClientConnection) -> tuple[CloseKind, int | None, str]:
        try:
            async for frame in ws:
                for event in parse_server_frame(frame):
                    await self._handle_event(event)
        except ConnectionClosed as exc:
            return self._closed(exc)
        # a normal close: ours (handoff or new conversation) or the server's
        return self._closed_normally(ws)

    def _closed(self, exc: ConnectionClosed) -> tuple[CloseKind, int | None, str]:
        if exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason
        elif exc.sent is not None and exc.sent.code != 1000:
            code, reason = exc.sent.code, exc.sent.reason or "closed locally"
        else:
            code, reason = 1006, "connection lost without a close frame"
        reason = self._redact(reason)
        return classify_close(code, reason), code, reason

    def _closed_normally(self, ws: ClientConnection) -> tuple[CloseKind, int | None, str]:
        proto = ws.protocol
        rcvd = proto.close_rcvd
        code = rcvd.code if rcvd is not None else 1000
        reason = self._redact(rcvd.reason) if rcvd is not None else ""
        if proto.close_sent is not None and proto.close_rcvd_then_sent is False:
            return CloseKind.RESUME, code, "connection handed over"
        kind = classify_close(code, reason)
        if kind is CloseKind.TRANSIENT and code in (1000, 1001):
            return CloseKind.RESUME, code, reason or "server closed the connection"
        return kind, code, reason

    async def _handle_event(self, event: p.ServerEvent) -> None:
        if isinstance(event, p.ResumptionUpdate):
            if event.resumable and event.new_handle:
                self.handle = event.new_handle
            return  # bookkeeping only
        if isinstance(event, p.GoAway):
            self._plan_handoff(event.time_left_s)
        elif isinstance(event, (p.ProtocolError, p.Unknown)):
            if isinstance(event, p.ProtocolError):
                self.stats.protocol_errors += 1
                log.warning("skipped a malformed server message: %s (%s)", event.message, event.excerpt)
            else:
                log.debug("ignored server field %s: %s", event.key, event.excerpt)
        if not isinstance(event, TURN_EVENTS):
            await self._events.put_data(event)
            return
        routed = self.conversation.route(event, self._clock())
        act = self._activity
        cur = self.conversation.current
        if (act is not None and cur is not None and cur.id == act.turn and cur.heard
                and act.end_sent_on == self._gen):
            self._activity = None  # the server has the question; no replay needed
        if not routed:
            self.stats.residue_events += 1
        for item in routed:
            if isinstance(item, TurnEnded):
                self._emit_ended([item])
            else:
                await self._events.put_data(item)
        self._changed()

    # ------------------------------------------------------------------ goAway handoff

    def _plan_handoff(self, time_left_s: float | None) -> None:
        left = 10.0 if time_left_s is None else max(0.0, time_left_s)
        margin = min(2.0, left / 4)
        deadline = self._clock() + left - margin
        log.info("server asked to reconnect within %.1f s; will hand over when no turn is in flight", left)
        if self._handoff_task is None or self._handoff_task.done():
            self._handoff_task = asyncio.get_running_loop().create_task(self._handoff(deadline, self._gen))

    async def _handoff(self, deadline: float, gen: int) -> None:
        remaining = deadline - self._clock()
        if remaining > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                log.warning("a turn is still in flight but the connection is ending; reconnecting now")
        ws = self._ws
        if ws is not None and self._gen == gen:
            await ws.close(1000, "handing over to a new connection")

    # ------------------------------------------------------------------ helpers

    def _auth_headers(self) -> dict[str, str]:
        if self._key is None:
            return {}
        if self._options.auth == "ephemeral":
            return {"Authorization": f"Token {self._key.reveal()}"}
        return {"x-goog-api-key": self._key.reveal()}

    def _redact(self, text: str) -> str:
        """Close reasons and errors come from the wire: cleaned and escaped once here, the key removed.

        Kept whole: a close frame's reason is at most 123 bytes, far below `TEXT_LIMIT`, so the
        owner reads what the service said (`ask`, `ctl status`, doctor, the log) with every
        control character escaped, never cut.
        """
        text = cleaning.clean_text(text, cleaning.TEXT_LIMIT)
        if self._key is not None and self._key.reveal():
            text = text.replace(self._key.reveal(), "[redacted]")
        return escape_controls(text)

    def _host(self) -> str:
        return urlsplit(self.url).netloc

    def _set_state(self, state: LinkState, reason: str, code: int | None = None) -> None:
        if state is self.state and state is not LinkState.ERROR:
            return
        previous, self.state = self.state, state
        if state is not previous:
            log.info("link %s -> %s: %s", previous.value, state.value, reason)
        self._state_changed.set()
        self._events.put_control(LinkChanged(state, reason, code))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
