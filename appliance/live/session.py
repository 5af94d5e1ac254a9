"""A Live API session that stays up for the life of the daemon.

`LiveSession` owns one WebSocket at a time.  It sends `setup`, waits for
`setupComplete`, then passes the server's events to its owner through a bounded
queue.  Behind that it keeps the newest resumption handle and reconnects by
itself: proactively after `goAway` (at the first moment no turn is in flight),
and with backoff after a drop.  A user's utterance is never silently lost across
a reconnect: the open (or just finished) activity is replayed on the new socket.

Everything runs on the caller's asyncio loop; no method blocks it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..netutil import is_loopback_host
from ..secret import RedactingFilter, Secret
from . import protocol as p
from .backoff import Backoff, config_error_backoff, quota_backoff, transient_backoff
from .profiles import ModelProfile, profile_for

log = logging.getLogger(__name__)
#: the websockets library logs handshake headers at debug level; its records go
#: through this logger, whose filter removes every session's key
wire_log = logging.getLogger("appliance.live.wire")
_wire_redactor = RedactingFilter()
wire_log.addFilter(_wire_redactor)

#: how much of one activity's audio is kept to replay after a reconnect (bytes of
#: 16 kHz s16le: 60 s); past it the live stream goes on but replay is partial
ACTIVITY_REPLAY_BYTES = 60 * 16000 * 2
#: an utterance that could not be sent is dropped when the link is down longer than this
STALE_TURN_S = 20.0
#: the event queue applies backpressure to the socket reader when the owner lags
EVENT_QUEUE_SIZE = 512
#: text and history messages waiting for the link; the oldest is dropped past this
OUTBOX_SIZE = 8
MAX_FRAME_BYTES = 4 * 1024 * 1024


class LinkState(str, enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    OFFLINE = "offline"  # transient failure; resuming with backoff
    ERROR = "error"  # the service refused our configuration; retrying slowly
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkChanged:
    """The connection changed state; `reason` is meant for the owner's eyes."""

    state: LinkState
    reason: str
    close_code: int | None = None


@dataclass(frozen=True)
class TurnDropped:
    """An utterance could not be delivered (offline for too long)."""

    reason: str


SessionEvent = p.ServerEvent | LinkChanged | TurnDropped


#: server events that show a submitted turn was heard (turnComplete is handled apart)
_REPLY_EVENTS = (
    p.InputTranscript,
    p.AudioChunk,
    p.ModelText,
    p.OutputTranscript,
    p.ToolCall,
    p.GenerationComplete,
)


class CloseKind(enum.Enum):
    RESUME = "resume"  # planned end of a connection: reconnect at once
    TRANSIENT = "transient"  # network or server fault: reconnect with backoff
    CONFIG = "config"  # fix the configuration: retry slowly
    QUOTA = "quota"  # out of quota: retry very slowly
    BAD_HANDLE = "bad_handle"  # the resumption handle is no longer valid


def classify_close(code: int | None, reason: str) -> CloseKind:
    """What a close code and reason mean for the next connection attempt."""
    text = reason.lower()
    if code in (1007, 1008):
        if "session not found" in text:
            return CloseKind.BAD_HANDLE
        # reported as passing faults around tool responses, not configuration
        if "requested entity was not found" in text or "operation was aborted" in text:
            return CloseKind.TRANSIENT
        return CloseKind.CONFIG
    if code == 1011:
        if "quota" in text or "exceeded your current" in text:
            return CloseKind.QUOTA
        if "deadline expired" in text:
            return CloseKind.RESUME
    return CloseKind.TRANSIENT


class InsecureEndpointError(ValueError):
    pass


def check_endpoint(url: str) -> None:
    """Refuse plain ws:// except to this machine: the key would cross the network in clear."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InsecureEndpointError(f"live.endpoint must be a ws:// or wss:// URL with a host, not {url!r}")
    if parts.scheme == "ws" and not is_loopback_host(parts.hostname):
        raise InsecureEndpointError(
            f"live.endpoint {parts.hostname} uses plain ws://, which would send the API key in clear; "
            "use wss:// (plain ws:// is only allowed to 127.0.0.1/localhost)"
        )




@dataclass
class _Activity:
    """One user utterance, kept until the server has all of it."""

    started: float
    chunks: list[bytes] = field(default_factory=list)
    audio_bytes: int = 0
    stored_bytes: int = 0
    ended_at: float | None = None
    #: connection generation on which start and every chunk so far were sent
    live_on: int | None = None
    start_sent_on: int | None = None
    end_sent_on: int | None = None
    #: the reply to an earlier turn was still coming when this one started; that
    #: reply's last events must not count as the server having heard this one
    earlier_turn_open: bool = False

    def add(self, pcm: bytes) -> None:
        self.audio_bytes += len(pcm)
        if self.stored_bytes + len(pcm) <= ACTIVITY_REPLAY_BYTES:
            self.chunks.append(pcm)
            self.stored_bytes += len(pcm)


@dataclass
class SessionStats:
    connections: int = 0
    resumed: int = 0
    audio_outside_activity: int = 0
    empty_activities: int = 0
    dropped_tool_responses: int = 0
    protocol_errors: int = 0


@dataclass(frozen=True)
class SessionOptions:
    setup_timeout_s: float = 10.0
    keepalive_interval_s: float = 20.0
    keepalive_timeout_s: float = 60.0
    auth: str = "api_key"  # or "ephemeral"
    user_agent: str = "appliance/0.1"


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
        self._transient = transient or transient_backoff()
        self._config_errors = config_errors or config_error_backoff()
        self._quota = quota_backoff()

        self.state = LinkState.CLOSED
        self.last_error: str = ""
        self.handle: str | None = None
        self.stats = SessionStats()
        self.connected_at: float | None = None
        self.conversation_started_at: float | None = None

        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._ws: ClientConnection | None = None
        self._gen = 0
        self._task: asyncio.Task[None] | None = None
        self._handoff_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._fresh_next = False

        self._activity: _Activity | None = None
        self._awaiting_reply = False
        self._pending_calls: set[str] = set()
        self._outbox: deque[dict[str, Any]] = deque()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin connecting in the background; events tell how it goes."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name="live-session")

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
        for task in (self._handoff_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = None
        self._set_state(LinkState.CLOSED, "closed by the appliance")

    def new_conversation(self) -> None:
        """Forget the conversation: the next connection starts without a handle."""
        self.handle = None
        self._fresh_next = True
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close(1000, "new conversation"))
        else:
            self._wake.set()

    def reconnect_now(self) -> None:
        """Skip the remaining backoff delay (e.g. the owner fixed the network)."""
        self._wake.set()

    async def next_event(self, timeout: float | None = None) -> SessionEvent:
        if timeout is None:
            return await self._events.get()
        return await asyncio.wait_for(self._events.get(), timeout)

    def drain_events(self) -> list[SessionEvent]:
        """Everything already queued, without waiting."""
        out: list[SessionEvent] = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    async def __aiter__(self) -> AsyncIterator[SessionEvent]:
        while True:
            yield await self._events.get()

    @property
    def busy(self) -> bool:
        """A turn is in flight: the user is speaking, a reply or a tool call is pending."""
        return self._activity is not None or self._awaiting_reply or bool(self._pending_calls)

    # ------------------------------------------------------------------ sending

    async def activity_start(self) -> None:
        """The user started speaking (also interrupts a reply on the server)."""
        if self._activity is not None and self._activity.end_sent_on is None and self._activity.ended_at:
            log.info("an undelivered utterance is replaced by a new one")
        self._activity = _Activity(started=self._clock(), earlier_turn_open=self._awaiting_reply)
        self._update_idle()
        if self.state is LinkState.READY:
            await self._catch_up(self._activity)

    async def send_audio(self, pcm: bytes) -> None:
        """16 kHz s16le mono audio of the current activity; outside one it is dropped."""
        act = self._activity
        if act is None or act.ended_at is not None:
            self.stats.audio_outside_activity += 1
            return
        if not pcm:
            return
        act.add(pcm)
        if act.live_on == self._gen and self.state is LinkState.READY:
            if not await self._send(p.audio_input(pcm)):
                act.live_on = None

    async def activity_end(self) -> bool:
        """The user stopped; True when a turn was submitted (or will be, once online).

        An activity without audio is not ended on the wire: the service closes the
        connection (1007 "No turn to complete") for that, and an accidental press
        should cost nothing.
        """
        act = self._activity
        if act is None or act.ended_at is not None:
            return False
        act.ended_at = self._clock()
        if act.audio_bytes == 0:
            self.stats.empty_activities += 1
            self._activity = None
            self._update_idle()
            log.info("press without audio: nothing sent to the model")
            return False
        if act.live_on == self._gen and self.state is LinkState.READY:
            await self._finish(act)
        return True

    async def send_text(self, text: str) -> None:
        """A typed user turn (used by `appliance ask --text`)."""
        self._awaiting_reply = True
        self._update_idle()
        await self._send_or_queue(p.text_input(text))

    async def send_client_content(self, turns: Sequence[tuple[str, str]], turn_complete: bool = True) -> None:
        if turn_complete:
            self._awaiting_reply = True
            self._update_idle()
        await self._send_or_queue(p.client_content(turns, turn_complete))

    async def send_tool_response(self, responses: Sequence[p.FunctionResponse]) -> int:
        """Answer function calls of the current connection; returns how many were sent.

        A call issued on a connection that has since closed cannot be answered on
        a new one (the service would reject the unknown id), so such answers are
        dropped with a warning.
        """
        valid = [r for r in responses if r.id in self._pending_calls]
        dropped = len(responses) - len(valid)
        if dropped:
            self.stats.dropped_tool_responses += dropped
            log.warning("dropped %d tool response(s) for calls of a closed connection", dropped)
        if not valid or self.state is not LinkState.READY:
            if valid:
                self.stats.dropped_tool_responses += len(valid)
                log.warning("link down: %d tool response(s) could not be sent", len(valid))
            return 0
        for r in valid:
            self._pending_calls.discard(r.id)
        self._update_idle()
        if await self._send(p.tool_response(valid)):
            return len(valid)
        return 0

    async def _send_or_queue(self, message: dict[str, Any]) -> None:
        if self.state is LinkState.READY and await self._send(message):
            return
        if len(self._outbox) >= OUTBOX_SIZE:
            self._outbox.popleft()
            log.warning("outbox full: dropped the oldest queued message")
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

    async def _catch_up(self, act: _Activity) -> None:
        """Put an activity on the current connection: start, all audio so far, end if ended."""
        gen = self._gen
        if act.start_sent_on != gen:
            if not await self._send(p.activity_start()):
                return
            act.start_sent_on = gen
            if act.stored_bytes < act.audio_bytes:
                log.warning("utterance longer than the replay buffer: its end is replayed partially")
            i = 0
            while i < len(act.chunks):
                if not await self._send(p.audio_input(act.chunks[i])) or self._gen != gen:
                    return
                i += 1
        act.live_on = gen
        if act.ended_at is not None:
            await self._finish(act)

    async def _finish(self, act: _Activity) -> None:
        """Send activityEnd; the activity is kept until the server shows it heard the turn.

        A send that "succeeds" into a socket that is already dead loses the turn, so
        the activity is only forgotten when a reply event arrives (see `_acknowledge`);
        a reconnect before that replays it.
        """
        if await self._send(p.activity_end()):
            act.end_sent_on = self._gen
            self._awaiting_reply = True
            self._update_idle()
        else:
            act.live_on = None

    def _acknowledge(self, event: p.ServerEvent) -> None:
        """Forget the submitted activity once the server answers it."""
        act = self._activity
        if act is None:
            return
        if act.earlier_turn_open:
            if isinstance(event, p.TurnComplete):
                act.earlier_turn_open = False  # that was the earlier turn's end
            return
        if act.end_sent_on != self._gen:
            return
        self._activity = None
        self._update_idle()

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
        if kind is CloseKind.RESUME:
            self._transient.reset()
            self._set_state(LinkState.CONNECTING, reason or "connection handed over", code)
            return 0.0
        if kind is CloseKind.BAD_HANDLE:
            log.warning("the service no longer knows this conversation; starting a fresh one")
            self.handle = None
            self._set_state(LinkState.CONNECTING, reason, code)
            return 0.0
        if kind is CloseKind.CONFIG:
            delay = self._config_errors.next_delay()
            self.last_error = reason
            self._set_state(LinkState.ERROR, reason, code)
            log.error("the service refused the session (%s): %s; retrying in %.0f s", code, reason, delay)
            return delay
        if kind is CloseKind.QUOTA:
            delay = self._quota.next_delay()
        else:
            delay = self._transient.next_delay()
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
                logger=wire_log,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return CloseKind.TRANSIENT, None, self._redact(f"cannot reach {self._host()}: {_describe(exc)}")

        self._ws = ws
        self._gen += 1
        self._pending_calls.clear()
        self.stats.connections += 1
        try:
            outcome = await self._setup(ws, handle)
            if outcome is not None:
                return outcome
            return await self._serve(ws)
        finally:
            self._ws = None
            self.connected_at = None
            if self._handoff_task is not None:
                self._handoff_task.cancel()
                self._handoff_task = None
            if ws.state.name != "CLOSED":
                await ws.close(1000)

    async def _setup(self, ws: ClientConnection, handle: str | None) -> tuple[CloseKind, int | None, str] | None:
        """Send setup and wait for setupComplete; None when the session is ready."""
        try:
            await ws.send(p.encode(p.build_setup(self.settings, self.profile, handle)))
            deadline = self._clock() + self._options.setup_timeout_s
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise TimeoutError
                frame = await asyncio.wait_for(ws.recv(decode=False), remaining)
                events = p.parse_server_frame(frame)
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
        self._transient.reset()
        self._config_errors.reset()
        self._quota.reset()
        self.last_error = ""
        self._set_state(LinkState.READY, "resumed the conversation" if handle else "new conversation")
        await self._deliver_pending()
        return None

    async def _deliver_pending(self) -> None:
        """Replay what the user said that the server may not have heard, then queued text.

        A reply that was streaming when the old connection ended will not finish on
        this one, so nothing is awaited any more unless an utterance is replayed.
        """
        act = self._activity
        self._awaiting_reply = act is not None
        self._update_idle()
        if act is not None:
            act.earlier_turn_open = False
            if act.ended_at is not None and self._clock() - act.ended_at > STALE_TURN_S:
                self._activity = None
                self._update_idle()
                await self._events.put(TurnDropped("offline too long; the utterance was not sent"))
            else:
                await self._catch_up(act)
        while self._outbox and self.state is LinkState.READY:
            if not await self._send(self._outbox[0]):
                return
            self._outbox.popleft()

    async def _serve(self, ws: ClientConnection) -> tuple[CloseKind, int | None, str]:
        try:
            async for frame in ws:
                for event in p.parse_server_frame(frame):
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
        return classify_close(code, reason), code, self._redact(reason)

    def _closed_normally(self, ws: ClientConnection) -> tuple[CloseKind, int | None, str]:
        proto = ws.protocol
        rcvd = proto.close_rcvd
        code = rcvd.code if rcvd is not None else 1000
        reason = rcvd.reason if rcvd is not None else ""
        if proto.close_sent is not None and proto.close_rcvd_then_sent is False:
            return CloseKind.RESUME, code, "connection handed over"
        kind = classify_close(code, reason)
        if kind is CloseKind.TRANSIENT and code in (1000, 1001):
            return CloseKind.RESUME, code, reason or "server closed the connection"
        return kind, code, self._redact(reason)

    async def _handle_event(self, event: p.ServerEvent) -> None:
        if isinstance(event, p.ResumptionUpdate):
            if event.resumable and event.new_handle:
                self.handle = event.new_handle
            return  # bookkeeping only
        if isinstance(event, _REPLY_EVENTS):
            self._acknowledge(event)
        if isinstance(event, p.GoAway):
            self._plan_handoff(event.time_left_s)
        elif isinstance(event, p.ToolCall):
            for call in event.calls:
                if call.id:
                    self._pending_calls.add(call.id)
            self._update_idle()
        elif isinstance(event, p.ToolCallCancellation):
            self._pending_calls.difference_update(event.ids)
            self._update_idle()
        elif isinstance(event, p.TurnComplete):
            self._acknowledge(event)
            if event.interaction_status != "IN_PROGRESS" and self._activity is None:
                self._awaiting_reply = False
                self._update_idle()
        elif isinstance(event, (p.ProtocolError, p.Unknown)):
            if isinstance(event, p.ProtocolError):
                self.stats.protocol_errors += 1
                log.warning("skipped a malformed server message: %s (%s)", event.message, event.excerpt)
            else:
                log.debug("ignored server field %s: %s", event.key, event.excerpt)
        await self._events.put(event)

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

    def _update_idle(self) -> None:
        if self.busy:
            self._idle.clear()
        else:
            self._idle.set()

    # ------------------------------------------------------------------ helpers

    def _auth_headers(self) -> dict[str, str]:
        if self._key is None:
            return {}
        if self._options.auth == "ephemeral":
            return {"Authorization": f"Token {self._key.reveal()}"}
        return {"x-goog-api-key": self._key.reveal()}

    def _redact(self, text: str) -> str:
        if self._key is not None and self._key.reveal():
            text = text.replace(self._key.reveal(), "[redacted]")
        return text

    def _host(self) -> str:
        return urlsplit(self.url).netloc

    def _set_state(self, state: LinkState, reason: str, code: int | None = None) -> None:
        if state is self.state and state is not LinkState.ERROR:
            return
        previous, self.state = self.state, state
        if state is not previous:
            log.info("link %s -> %s: %s", previous.value, state.value, reason)
        self._state_changed.set()
        try:
            self._events.put_nowait(LinkChanged(state, reason, code))
        except asyncio.QueueFull:
            log.warning("event queue full; link change to %s not queued", state.value)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
