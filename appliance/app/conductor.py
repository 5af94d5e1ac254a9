"""The appliance's one state machine.

Everything that happens to the box arrives here, on the event loop: button
gestures (from GPIO, the keyboard or `appliance ctl`), the session's events, the
uplink's turn reports and the speaker's playback events.  The conductor decides
what the user hears and sees, and logs every state change once, with its reason.

States: connecting, idle, listening, thinking, speaking, offline, error, alarm,
no_microphone, no_speaker, muted.  Nothing may stay stuck: which turn a reply belongs to
and how it ended comes from the session's conversation model
(`live.conversation`), and every ending has a way back to rest: a reply that is
complete plays out, one lost to a drop plays what arrived and then the error
earcon, one that never comes ends after `live.reply_timeout_s` with the error
earcon.

Muted (`set_muted`, from the daemon, which owns the microphone and remembers the mute), the
appliance rests in "muted" whatever the link or the devices say, and a press only says so with
the muted earcon; a reply already on its way and a ringing alarm still have their states while
they last.

Longer than usual because it is the device's one state machine: gestures, the link,
replies, devices and the alarm meet here, and keeping them in one place is what lets a
reader see every way back to rest (start at `_press`, `_barge_in` and `_on_turn_ended`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from appliance.hw.gestures import Gesture
from appliance.settings.schema import Config
from appliance.live import messages as p
from appliance.live.conversation import Attributed, Outcome, TurnEnded
from appliance.live.connection import LiveSession
from appliance.live.link import LinkChanged, LinkState
from appliance.app.alarms import AlarmBell, Ringing
from appliance.app.replies import OUTCOME_TEXT, Reply, TurnMetrics
from appliance.app.announce import Announcement, Announcements, prompt_for
from appliance.app.transcript import MAX_LINE_CHARS, TranscriptLine, Transcripts
from appliance.textsafe import quoted
from appliance.app.turntaking import Mode, TurnReport, Uplink

log = logging.getLogger(__name__)

#: turns kept for `appliance ctl status`
RECENT_TURNS = 10
#: ids of turns the conductor already finished, so their queued events are ignored
FINISHED_TURNS = 32


class State(str, enum.Enum):
    CONNECTING = "connecting"
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    OFFLINE = "offline"
    ERROR = "error"
    ALARM = "alarm"
    NO_MICROPHONE = "no_microphone"
    NO_SPEAKER = "no_speaker"
    MUTED = "muted"


#: the LED pattern each state shows (a missing device is a fault the owner must see)
LIGHT_FOR_STATE = {State.NO_MICROPHONE: "error", State.NO_SPEAKER: "error"}


class Speaker(Protocol):
    """What the conductor needs of the speaker (appliance.audio.speaker.Player)."""

    events: Any
    underruns: int
    volume: int

    def feed(self, pcm24k: bytes) -> None: ...
    def end_of_reply(self) -> None: ...
    def flush(self) -> None: ...
    def new_reply(self, *, after_earcons: bool = False) -> None: ...
    def play_earcon(self, name: str) -> bool: ...
    def set_volume(self, level: int) -> None: ...


class Lights(Protocol):
    def show(self, state: str) -> None: ...


ToolHandler = Callable[[p.ToolCall], Awaitable[list[p.FunctionResponse]]]


@dataclass
class Conductor:
    cfg: Config
    session: LiveSession
    uplink: Uplink
    speaker: Speaker
    lights: Lights
    clock: Callable[[], float] = time.monotonic
    #: answers the model's function calls (the kitchen tools); None answers "not available"
    tool_handler: ToolHandler | None = None
    #: ringing timers: a press or `ctl stop` silences them
    alarms: Ringing | None = None
    #: undoes what cancelled tool calls did (toolCallCancellation)
    cancel_tools: Callable[[list[str]], list[str]] | None = None
    #: every state change, for the demo's timeline and tests: (state, reason)
    on_state: Callable[[State, str], None] | None = None
    #: what was said, one whole line per speaker per turn (see app.transcript); the text is the
    #: service's, unescaped; never logged unless privacy.log_transcripts
    on_transcript: Callable[[TranscriptLine], None] | None = None
    #: the mute hold: whoever owns the microphone mutes or unmutes it, then calls `set_muted`
    on_mute_toggle: Callable[[], None] | None = None

    state: State = State.CONNECTING
    last_error: str = ""
    turns: deque[TurnMetrics] = field(default_factory=lambda: deque(maxlen=RECENT_TURNS))

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._reply: Reply | None = None
        self._press_at: float | None = None
        self._pressed = False
        self._barge_press_at: float | None = None
        #: turns already finished here; their late events are ignored
        self._finished: deque[int] = deque(maxlen=FINISHED_TURNS)
        #: turns the session ended before the uplink's report about them arrived
        self._ended_early: dict[int, TurnEnded] = {}
        self._transcripts = Transcripts()
        self._announcements = Announcements()
        self._announcing: asyncio.Task[None] | None = None
        #: a reason the appliance cannot talk at all (no API key); None when it can
        self._fatal: str | None = None
        #: devices that are gone: "microphone", "speaker"
        self.missing: set[str] = set()
        #: the microphone is off on purpose (see set_muted)
        self.muted = False
        #: rings finished timers (None without a timer service)
        self.bell = self._make_bell()
        #: what to do at the next idle moment before a new conversation (new session settings), and why
        self._switch: tuple[Callable[[], None], str] | None = None
        self._changed = asyncio.Event()
        #: (sequence number, state, reason) of recent transitions, for the demo and tests
        self.history: deque[tuple[int, State, str]] = deque(maxlen=200)
        self._seq = 0
        self.uplink.on_turn_end = self._on_turn_end
        self.uplink.on_sending = self._on_sending
        events = self.speaker.events
        events.on_first_audio = self._on_first_audio
        events.on_drained = self._on_drained
        events.on_silent_after_flush = self._on_silent_after_flush
        self.lights.show(self.state.value)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._fatal is None:
            self.session.start()
        self._tasks = [
            loop.create_task(self._consume_session(), name="conductor-session"),
            loop.create_task(self.uplink.run(), name="uplink"),
        ]

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """Long-lived tasks that must never end while the appliance runs (for the supervisor)."""
        return list(self._tasks) + (self.session.tasks if self._fatal is None else [])

    def cannot_talk(self, reason: str) -> None:
        """Nothing can reach the service (e.g. no API key): show it, never connect.

        Timers still ring; a press plays the error earcon.
        """
        self._fatal = reason
        self.last_error = reason
        self._set(State.ERROR, reason)

    async def close(self) -> None:
        """Abort the turn and stop; the caller closes the session and devices."""
        tasks = list(self._tasks) + ([self._announcing] if self._announcing is not None else [])
        if self.bell is not None:
            await self.bell.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    # ------------------------------------------------------------------ settings

    def use_settings(self, cfg: Config) -> None:
        """New settings that apply as they are read (a reload): whether transcripts are logged at
        once, the alarm's rhythm from the next alarm on."""
        self.cfg = cfg

    def new_conversation_when_idle(self, prepare: Callable[[], None], reason: str) -> None:
        """At the next idle moment (never during a turn, a reply or an alarm) call `prepare`, then
        start a new conversation; a later call replaces this one."""
        self._switch = (prepare, reason)
        self._maybe_switch()

    def cancel_new_conversation(self, reason: str) -> bool:
        """Drop the pending new conversation if it was asked for `reason`; whether one was dropped.

        Why the reason: a reload back to the settings in use must not cancel the one a home
        server's new tools asked for.
        """
        if self._switch is None or self._switch[1] != reason:
            return False
        self._switch = None
        return True

    @property
    def switch_pending(self) -> bool:
        return self._switch is not None

    def _maybe_switch(self) -> None:
        if self._switch is None or self._busy or self._reply is not None:
            return
        if self.uplink.listening or self.session.busy:
            return
        (prepare, reason), self._switch = self._switch, None
        prepare()
        self._begin_new_conversation(reason)

    def _make_bell(self) -> AlarmBell | None:
        self._bell_interval = self.cfg.timers.ring_interval_s
        if self.alarms is None:
            return None
        return AlarmBell(self.alarms, self.speaker, self._bell_interval, self.alarms_changed)

    # ------------------------------------------------------------------ state

    def _set(self, state: State, reason: str) -> None:
        if state is self.state:
            return
        log.info("state %s -> %s: %s", self.state.value, state.value, reason)
        self.state = state
        self._seq += 1
        self.history.append((self._seq, state, reason))
        self._show()
        if self.on_state is not None:
            self.on_state(state, reason)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _show(self) -> None:
        if self._listening_light():
            self.lights.show("listening")
        else:
            self.lights.show(LIGHT_FOR_STATE.get(self.state, self.state.value))

    @property
    def seq(self) -> int:
        """The number of the latest transition; pass it to `wait_state(since=...)`."""
        return self._seq

    async def wait_state(self, wanted: State, timeout: float, *, since: int | None = None) -> int:
        """Until `wanted` is entered after transition `since` (default: now, or already in it).

        Returns that transition's number.  For the demo and tests; TimeoutError otherwise.
        """

        start = self._seq if since is None else since

        def entered() -> int | None:
            if since is None and self.state is wanted:
                return self._seq
            for seq, state, _ in self.history:
                if seq > start and state is wanted:
                    return seq
            return None

        async with asyncio.timeout(timeout):
            while (found := entered()) is None:
                await self._changed.wait()
        return found

    def _listening_light(self) -> bool:
        return self.state is State.LISTENING or self.uplink.sending

    def _rest_state(self) -> State:
        """Where the appliance rests when nothing is happening."""
        if self.muted:  # what the owner chose shows first: a glance must tell a deaf box
            return State.MUTED
        if self._fatal is not None:
            return State.ERROR
        if "speaker" in self.missing:
            return State.NO_SPEAKER
        if "microphone" in self.missing:
            return State.NO_MICROPHONE
        link = self.session.state
        if link is LinkState.READY:
            return State.IDLE
        if link is LinkState.ERROR:
            return State.ERROR
        if link is LinkState.OFFLINE:
            return State.OFFLINE
        return State.CONNECTING

    def _settle(self, reason: str) -> None:
        """Back to rest: the alarm while a timer rings, else what the devices and link say."""
        if self.bell is not None and self.bell.ringing:
            self._set(State.ALARM, reason)
        else:
            self._set(self._rest_state(), reason)
            self._maybe_switch()
            self._maybe_announce()

    # ------------------------------------------------------------------ announcements (ctl say)

    def announce(self, text: str) -> Announcement:
        """Speak `text` at the next idle moment (see app.announce); ValueError for a bad request.

        Offline it is refused at once, and the no-network earcon says so to the room.
        """
        online = self.session.state is LinkState.READY and self._fatal is None
        item = self._announcements.request(text, self.clock(), online=online)
        if item.state == "dropped":
            log.warning("announcement not spoken: %s", item.why)
            self.speaker.play_earcon("no_network")
            return item
        self._maybe_announce()
        return item

    def _maybe_announce(self) -> None:
        if self._announcing is not None or not self._announcements.waiting:
            return
        idle = (not self._busy and self._reply is None and self._switch is None
                and not self.uplink.listening and not self.session.busy)
        online = self.session.state is LinkState.READY and self._fatal is None
        item = self._announcements.due(self.clock(), idle=idle, online=online)
        if item is not None:
            self._announcing = asyncio.get_running_loop().create_task(self._speak(item), name="announcement")
            self._announcing.add_done_callback(self._announced)

    async def _speak(self, item: Announcement) -> None:
        """The chime, then a text turn that asks the model to say the sentence; the reply plays as any."""
        self.speaker.play_earcon("announce")
        turn = await self.session.send_text(prompt_for(item.text))
        metrics = TurnMetrics(at=time.time(), mode="announcement", end_reason=None, submitted=True, barge_in=False)
        if self._reply is not None:
            self._finish_reply("superseded by an announcement")
        self._reply = Reply(turn, metrics, self.clock(), underruns_at_start=self.speaker.underruns)
        self.speaker.new_reply(after_earcons=True)  # the chime first, then the voice
        self._announcements.finished(item, spoken=True)
        self._set(State.THINKING, "announcement")

    def _announced(self, task: asyncio.Task[None]) -> None:
        self._announcing = None
        if not task.cancelled() and task.exception() is not None:
            log.error("the announcement failed: %s", task.exception())
        if not self._busy:
            self._maybe_announce()

    @property
    def _busy(self) -> bool:
        return self.state in (State.LISTENING, State.THINKING, State.SPEAKING, State.ALARM)

    # ------------------------------------------------------------------ devices

    def device_changed(self, kind: str, present: bool, reason: str) -> None:
        """The microphone or speaker went away or came back (from its watch)."""
        if present:
            if kind not in self.missing:
                return
            self.missing.discard(kind)
            log.info("%s is back: %s", kind, reason)
        else:
            if kind in self.missing:
                return
            self.missing.add(kind)
            log.warning("no %s: %s", kind, reason)
            if kind == "microphone" and self.uplink.listening:
                self.uplink.stop()
            if kind == "speaker" and self._reply is not None:
                self.session.cut_reply("the speaker is gone")
                self._finish_reply("the speaker is gone")
        if not self._busy or not present:
            self._settle(f"{kind} {'back' if present else 'missing'}")

    # ------------------------------------------------------------------ alarms

    def timer_rang(self, timer: Any) -> None:
        """A timer finished: ring here, whether or not the session is up."""
        label = getattr(timer, "label", "") or "a timer"
        self._set(State.ALARM, f"timer {label} finished")
        if self.bell is not None and not self.bell.sounding and self._bell_interval != self.cfg.timers.ring_interval_s:
            self.bell = self._make_bell()  # a reload changed the rhythm
        if self.bell is not None:
            self.bell.ring()

    def alarms_changed(self) -> None:
        """The set of ringing timers changed (e.g. one stopped by itself after ring_max_s)."""
        if self.state is State.ALARM and not (self.bell is not None and self.bell.ringing):
            self._settle("alarm over")

    def _stop_alarm(self) -> bool:
        return self.bell is not None and self.bell.stop()

    # ------------------------------------------------------------------ mute

    def set_muted(self, muted: bool, reason: str, *, announce: bool = True) -> None:
        """The microphone was switched off (or on again) on purpose; `announce` plays its earcon.

        Muting ends a question being asked: one with nothing sent yet is dropped, one already
        going out is ended there (its reply still plays).  Called by the daemon, which closes
        and opens the microphone itself.
        """
        if muted == self.muted:
            return
        self.muted = muted
        log.info("microphone %s: %s", "muted" if muted else "unmuted", reason)
        if muted and self.uplink.listening:
            self._pressed = False
            if self.uplink.cancel():
                self._settle(f"muted while listening ({reason})")
            else:
                self.uplink.stop()
        if announce:
            self.speaker.play_earcon("muted" if muted else "unmuted")
        if not self._busy:
            self._settle(f"{'muted' if muted else 'unmuted'} ({reason})")

    def _mute_hold(self) -> None:
        if self.uplink.listening and self.uplink.heard_speech:
            return  # a long utterance, not a gesture
        self._pressed = False
        if self.uplink.listening and self.uplink.cancel():
            self._settle("held to mute")
        if self.on_mute_toggle is not None:
            self.on_mute_toggle()

    def _press_while_muted(self) -> None:
        """Nothing is heard while muted: a press silences a reply still playing and says why."""
        self._pressed = False
        if self._reply is not None or self.state in (State.THINKING, State.SPEAKING):
            self._barge_in(self.clock())
        log.info("press ignored: the microphone is muted")
        self.speaker.play_earcon("muted")
        self._settle("press while muted")

    # ------------------------------------------------------------------ gestures

    def gesture(self, gesture: Gesture) -> None:
        """A button gesture, from GPIO, the keyboard or `appliance ctl` alike."""
        if gesture is Gesture.PRESS:
            self._press()
        elif gesture in (Gesture.RELEASE_TAP, Gesture.RELEASE_HOLD):
            self._release(tap=gesture is Gesture.RELEASE_TAP)
        elif gesture is Gesture.LONG_HOLD:
            if not self.muted:
                self._long_hold()
        elif gesture is Gesture.MUTE_HOLD:
            self._mute_hold()

    def _cannot_listen(self) -> str | None:
        """Why a press cannot start a question now, or None."""
        if self._fatal is not None:
            return self._fatal
        if "microphone" in self.missing:
            return "no microphone"
        if "speaker" in self.missing:
            return "no speaker"
        if self.session.state is LinkState.ERROR:
            return self.session.last_error or "the service refused the session"
        return None

    def _press(self) -> None:
        now = self.clock()
        self._pressed = True
        if self._stop_alarm():
            self._pressed = False  # this press was spent on the alarm
            self._settle("alarm stopped by a press")
            return
        if self.muted:
            self._press_while_muted()
            return
        if self.uplink.listening:
            # a press during a tap turn ends it
            self.uplink.stop()
            self._pressed = False
            return
        barge_in = self._reply is not None or self.state in (State.THINKING, State.SPEAKING)
        if barge_in:
            self._barge_in(now)
        why_not = self._cannot_listen()
        if why_not is not None:
            self._pressed = False
            log.info("press ignored: %s", why_not)
            self.speaker.play_earcon("error")
            self._settle(f"cannot listen: {why_not}")
            return
        self._press_at = now
        self.uplink.press(Mode.HOLD, barge_in=barge_in)
        if self.session.state is not LinkState.READY:
            # the question is kept and sent when the link is back (within a while)
            self.session.try_now()
            self.speaker.play_earcon("no_network")
        else:
            self.speaker.play_earcon("listen_start")
        self._set(State.LISTENING, "barge-in press" if barge_in else "button pressed")

    def _barge_in(self, now: float) -> None:
        """A press while a reply is due or playing: silence it here, now, and cut it.

        The speaker drops what it holds (its jitter buffer and the device's queue), the
        session tells the conversation model the reply is over (nothing goes on the wire
        until the user speaks: see `turntaking`), and the reply's metrics are closed.
        """
        self._barge_press_at = now
        self.speaker.flush()
        self.session.cut_reply("interrupted by a press")
        self._finish_reply("interrupted by a press")

    def _release(self, *, tap: bool) -> None:
        if not self._pressed:
            return
        self._pressed = False
        self.uplink.release(tap=tap)

    def _long_hold(self) -> None:
        if not self.uplink.listening or self.uplink.heard_speech:
            return  # a long utterance, not a gesture
        self.uplink.cancel()
        self._pressed = False
        self.new_conversation("long hold")

    def new_conversation(self, reason: str) -> None:
        """The owner asked for one (a long hold, `ctl new-conversation`): what was playing stops."""
        self.speaker.flush()
        self._finish_reply("new conversation")
        if self._begin_new_conversation(reason):
            self.speaker.play_earcon("listen_end")

    def _begin_new_conversation(self, reason: str) -> bool:
        """Forget the conversation; False when there is no session to start one on."""
        if self._fatal is not None:
            self._settle(f"new conversation ({reason})")
            return False
        self.session.new_conversation()
        if self.muted:  # the muted light stays while the new conversation connects
            self._settle(f"new conversation ({reason})")
        else:
            self._set(State.CONNECTING, f"new conversation ({reason})")
        return True

    def stop(self) -> None:
        """Stop whatever is playing or ringing (`appliance ctl stop`)."""
        self._stop_alarm()
        if self._reply is not None or self.state in (State.SPEAKING, State.THINKING):
            self.speaker.flush()
            self.session.cut_reply("stopped")
            self._finish_reply("stopped")
        if self.uplink.listening:
            self.uplink.stop()
        self._settle("stopped")

    # ------------------------------------------------------------------ uplink callbacks

    def _on_sending(self, sending: bool) -> None:
        self._show()

    def _on_turn_end(self, report: TurnReport) -> None:
        metrics = TurnMetrics(
            at=time.time(),
            mode=report.mode.value,
            end_reason=report.reason.value if report.reason else None,
            submitted=report.submitted,
            barge_in=report.barge_in,
            press_to_start_ms=report.press_to_start_ms,
            release_to_end_ms=report.release_to_end_ms,
        )
        self.speaker.play_earcon("listen_end")
        if not report.submitted:
            metrics.outcome = "no speech"
            self._record(metrics)
            self._settle(f"turn ended without speech ({metrics.end_reason})")
            return
        turn = report.turn_id
        reply = self._reply
        if reply is not None and reply.turn == turn:
            # its first reply events overtook this report
            reply.metrics, reply.end_sent_at = metrics, report.end_sent_at
            return
        if reply is not None:
            self._finish_reply("superseded by a new question")
        self._reply = Reply(turn, metrics, report.end_sent_at, underruns_at_start=self.speaker.underruns)
        self.speaker.new_reply()
        early = self._ended_early.pop(turn, None) if turn is not None else None
        if early is not None:
            self._on_turn_ended(early)
            return
        self._set(State.THINKING, "turn sent, waiting for the reply")

    # ------------------------------------------------------------------ session events

    async def _consume_session(self) -> None:
        while True:
            event = await self.session.next_event()
            try:
                await self._on_session_event(event)
                self._maybe_switch()  # the turn that held back new settings may have just ended
                self._maybe_announce()  # and an announcement may have been waiting for it
            except Exception:  # one bad event must not stop the appliance
                log.exception("failed to handle %r", event)

    async def _on_session_event(self, event: object) -> None:
        if isinstance(event, LinkChanged):
            self._on_link(event)
        elif isinstance(event, Attributed):
            await self._on_attributed(event.turn, event.event)
        elif isinstance(event, TurnEnded):
            self._on_turn_ended(event)
        elif isinstance(event, p.ToolCallCancellation):
            if self.cancel_tools is not None:
                undone = self.cancel_tools(list(event.ids))
                if undone:
                    log.info("cancelled tool calls undone: %s", "; ".join(undone))

    async def _on_attributed(self, turn: int | None, event: p.ServerEvent) -> None:
        if isinstance(event, p.ToolCall):
            await self._answer_tools(event)  # answered whoever asked: the service waits for the ids
        elif isinstance(event, p.AudioChunk):
            self._on_audio(turn, event)
        elif isinstance(event, p.Interrupted):
            if self._reply is not None and self._reply.turn == turn:
                self.speaker.flush()
        elif isinstance(event, (p.InputTranscript, p.OutputTranscript)):
            who = "user" if isinstance(event, p.InputTranscript) else "reply"
            self._said(self._transcripts.add(turn, who, event.text))

    def _said(self, lines: list[TranscriptLine]) -> None:
        """Whole transcript lines: to whoever listens, and to the journal only if the owner allowed it."""
        for line in lines:
            if self.on_transcript is not None:
                self.on_transcript(line)
            if self.cfg.privacy.log_transcripts:
                log.info("%s: %s%s", "heard" if line.who == "user" else "answered", quoted(line.text, MAX_LINE_CHARS),
                         " (cut short)" if line.interrupted else "")

    def _on_link(self, event: LinkChanged) -> None:
        if event.state is LinkState.ERROR:
            self.last_error = event.reason
        if event.state is LinkState.CONNECTING and self.state in (State.OFFLINE, State.ERROR):
            return  # each retry is not news: keep showing offline or error until it works
        if not self._busy:
            self._settle(event.reason)

    def _reply_for(self, turn: int) -> Reply:
        """The reply this turn's content goes to; a turn nobody asked (the service's own) gets one."""
        reply = self._reply
        if reply is not None and reply.turn == turn:
            return reply
        if reply is not None:
            self._finish_reply("superseded by the next reply")
        metrics = TurnMetrics(at=time.time(), mode="service", end_reason=None, submitted=False, barge_in=False)
        reply = self._reply = Reply(turn, metrics, None, underruns_at_start=self.speaker.underruns)
        self.speaker.new_reply()
        return reply

    def _on_audio(self, turn: int | None, event: p.AudioChunk) -> None:
        if turn is None or turn in self._finished:
            return  # late audio of a reply that is over here
        reply = self._reply_for(turn)
        if event.rate != p.OUTPUT_RATE:
            if not reply.odd_rate_logged:
                reply.odd_rate_logged = True
                log.warning("reply audio at %d Hz is not supported (only %d Hz); skipped",
                            event.rate, p.OUTPUT_RATE)
            return
        if reply.first_audio_at is None:
            reply.first_audio_at = self.clock()
            if reply.end_sent_at is not None:
                reply.metrics.end_to_first_audio_ms = (reply.first_audio_at - reply.end_sent_at) * 1000
        self.speaker.feed(event.pcm)

    def _on_turn_ended(self, event: TurnEnded) -> None:
        self._said(self._transcripts.end_turn(event.turn, interrupted=event.outcome is not Outcome.COMPLETE))
        if event.turn in self._finished or event.outcome is Outcome.EMPTY:
            return
        reply = self._reply
        if reply is None or reply.turn != event.turn:
            if self.state is State.LISTENING or reply is None:
                # the uplink's report about this turn has not come yet
                self._ended_early[event.turn] = event
                while len(self._ended_early) > FINISHED_TURNS:
                    self._ended_early.pop(next(iter(self._ended_early)))
            return
        if event.outcome is Outcome.COMPLETE:
            if reply.first_audio_at is None:
                reply.metrics.outcome = "no reply audio"
                self._finish_reply("the model answered without audio")
                self._settle("reply complete (no audio)")
                return
            reply.complete = True
            self.speaker.end_of_reply()
            return
        self.last_error = event.detail
        if event.outcome is Outcome.LOST and reply.first_audio_at is not None:
            # let what arrived play out, then say it went wrong
            reply.failed = event.detail
            reply.complete = True
            self.speaker.end_of_reply()
            return
        self.speaker.flush()
        reply.metrics.outcome = OUTCOME_TEXT.get(event.outcome, event.outcome.value)
        self._finish_reply(event.detail)
        if event.outcome is not Outcome.INTERRUPTED:
            self.speaker.play_earcon("error")
        self._settle(event.detail)

    async def _answer_tools(self, event: p.ToolCall) -> None:
        if self.tool_handler is not None:
            responses = await self.tool_handler(event)
        else:
            responses = [
                p.FunctionResponse(c.id, c.name, {"error": f"{c.name} is not available on this device"})
                for c in event.calls
                if c.id
            ]
        if responses:
            await self.session.send_tool_response(responses)

    # ------------------------------------------------------------------ speaker events

    def _on_first_audio(self, at: float) -> None:
        reply = self._reply
        if reply is None:
            return
        if reply.first_audio_at is not None:
            reply.metrics.first_audio_to_device_ms = max(0.0, (at - reply.first_audio_at) * 1000)
        if self.state is not State.LISTENING:
            self._set(State.SPEAKING, "reply playing")

    def _on_drained(self, at: float) -> None:
        reply = self._reply
        if reply is None or not reply.complete:
            return
        if reply.failed:
            reply.metrics.outcome = OUTCOME_TEXT[Outcome.LOST]
            self._finish_reply(reply.failed)
            self.speaker.play_earcon("error")
            self._settle(reply.failed)
            return
        reply.metrics.outcome = "answered"
        self._finish_reply("reply played")
        self._settle("reply played")

    def _on_silent_after_flush(self, at: float) -> None:
        if self._barge_press_at is not None:
            silent_ms = max(0.0, (at - self._barge_press_at) * 1000)
            self._barge_press_at = None
            log.info("barge-in: speaker silent %.0f ms after the press", silent_ms)
            if self.turns:
                self.turns[-1].barge_in_to_silent_ms = silent_ms

    # ------------------------------------------------------------------ reply bookkeeping

    def _finish_reply(self, reason: str) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        if reply.turn is not None:
            self._finished.append(reply.turn)
            # a cut reply's turn may never end on the wire: what it said so far is still shown
            self._said(self._transcripts.end_turn(reply.turn, interrupted=not reply.complete))
        if reply.first_audio_at is not None:
            reply.metrics.reply_ms = (self.clock() - reply.first_audio_at) * 1000
        reply.metrics.underruns = self.speaker.underruns - reply.underruns_at_start
        if not reply.metrics.outcome:
            reply.metrics.outcome = reason
        self._record(reply.metrics)

    def _record(self, metrics: TurnMetrics) -> None:
        self.turns.append(metrics)
        log.info("%s", metrics.line())

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        now = self.clock()
        session = self.session
        live = self.cfg.live
        return {
            "state": self.state.value,
            "connection": "not connecting" if self._fatal is not None else session.state.value,
            # what this conversation was set up with (new ones from a reload wait for the next)
            "model": live.model,
            "voice": live.voice,
            "language": live.language or None,
            "session_age_s": None if session.conversation_started_at is None
            else round(now - session.conversation_started_at, 1),
            "connection_age_s": None if session.connected_at is None else round(now - session.connected_at, 1),
            "volume": self.speaker.volume,
            "muted": self.muted,
            "missing_devices": sorted(self.missing),
            "last_error": self.last_error or session.last_error or None,
            "reconnects": max(0, session.stats.connections - 1),
            "turns": [asdict(t) for t in self.turns],
            "announcements": self._announcements.describe(),
        }
