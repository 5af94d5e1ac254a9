"""Whose reply is this, and how did it end: the one owner of turn identity.

`Conversation` is sans-I/O.  The session feeds it every turn-shaped thing it sends
(an activity starts, ends, is delivered, a tool response goes out) and every
server event it receives, each with the time; the model answers with the turn
the event belongs to and the turns that ended, and how.  No sockets, no clock, no
logger, so every interleaving can be tested with message sequences alone.

Rules, from what the service is documented (and reported) to do:

* A turn is opened by an activity (or a text turn) and submitted when its
  `activityEnd` is delivered on a live connection.  Reply content (audio, text,
  output transcripts, tool calls, generationComplete) belongs to the submitted
  turn; content that arrives while the user is still talking, or with no turn in
  flight after a cut, is residue of a reply the user abandoned and is dropped.
* A reply the client abandons (a barge-in press, `ctl stop`, a reply timeout)
  ends at once as `interrupted` or `timed_out`, and is remembered as *cut*: the
  server may still send some of it and close it with `interrupted` and/or
  `turnComplete`, in either of the two documented barge-in sequences.  A
  `turnComplete` before the next turn has any content closes the oldest cut
  reply; content after the next turn was submitted is that turn's (the service
  stops a reply when the next activity starts, long before that activity ends)
  and forgets every cut.  Nothing is owed across a connection: a drop forgets
  all cuts.
* `turnComplete` with `interactionStatus: IN_PROGRESS` does not end the turn
  (a NON_BLOCKING tool is still working); anything else does.
* A drop mid-reply ends the turn as `lost`.  A submitted turn that the server has
  shown no sign of hearing goes back to *held* and is replayed on the next
  connection; a held turn older than `stale_s` is `lost` ("offline too long").
* A submitted turn with no reply event for `reply_timeout_s` is `timed_out`. The
  clock stops while a tool call is still ours to answer (the service is waiting on
  us; the tool's own timeout bounds that) and starts again when the answer goes out.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from appliance.live import messages as p

#: cut replies remembered at once; a burst of presses beyond this forgets the oldest
MAX_CUTS = 8


class Outcome(str, enum.Enum):
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"  # cut by the user or by the service
    LOST = "lost"  # the connection went away mid-reply, or offline too long to deliver
    TIMED_OUT = "timed_out"  # no reply event for reply_timeout_s
    EMPTY = "empty"  # the activity ended with nothing to send; nothing went on the wire


class Phase(str, enum.Enum):
    OPEN = "open"  # the user is talking
    HELD = "held"  # ended locally, not (or no longer) delivered on a live connection
    SUBMITTED = "submitted"  # delivered; waiting for the reply
    REPLYING = "replying"  # reply content has come
    ENDED = "ended"


class Origin(str, enum.Enum):
    VOICE = "voice"
    TEXT = "text"
    SERVER = "server"  # content with no question in flight (e.g. a NON_BLOCKING tool's result)


@dataclass
class Turn:
    id: int
    origin: Origin
    started_at: float
    phase: Phase = Phase.OPEN
    ended_locally_at: float | None = None
    submitted_at: float | None = None
    #: the last time the server showed progress on this turn (for the reply timeout)
    progress_at: float | None = None
    #: the server showed it received the question (a transcript, content or turnComplete)
    heard: bool = False
    #: reply content arrived
    content: bool = False
    outcome: Outcome | None = None
    detail: str = ""

    @property
    def in_flight(self) -> bool:
        return self.phase is not Phase.ENDED

    @property
    def awaiting_reply(self) -> bool:
        return self.phase in (Phase.SUBMITTED, Phase.REPLYING)


@dataclass(frozen=True)
class TurnEnded:
    """A turn is over; `detail` says why in words for the owner."""

    turn: int
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Attribution:
    """What one server event means for the turns."""

    #: the turn the event belongs to; None for content of no live turn
    turn: int | None
    #: residue of an abandoned reply: do not play or show it
    residue: bool = False
    ended: tuple[TurnEnded, ...] = ()


@dataclass
class _Cut:
    turn: int
    #: the server confirmed the cut with `interrupted`
    confirmed: bool = False


@dataclass(frozen=True)
class Attributed:
    """A server event that is part of a turn; `turn` is None when no live turn owns it."""

    turn: int | None
    event: p.ServerEvent


#: server events that are part of a reply
CONTENT_EVENTS = (p.AudioChunk, p.ModelText, p.OutputTranscript, p.ToolCall, p.GenerationComplete)
#: every server event the model has a say about
TURN_EVENTS = (*CONTENT_EVENTS, p.InputTranscript, p.Interrupted, p.TurnComplete, p.ToolCallCancellation)


@dataclass
class Conversation:
    """See the module docstring; times are the caller's monotonic seconds."""

    reply_timeout_s: float = 20.0
    stale_s: float = 20.0
    current: Turn | None = None
    pending_calls: set[str] = field(default_factory=set)
    _next_id: int = 1
    _cuts: deque[_Cut] = field(default_factory=lambda: deque(maxlen=MAX_CUTS))

    # ------------------------------------------------------------------ queries

    @property
    def busy(self) -> bool:
        """A question is in flight or a tool call is unanswered: not a moment to hand over."""
        return (self.current is not None and self.current.in_flight) or bool(self.pending_calls)

    @property
    def owed_closers(self) -> int:
        """Cut replies whose end the server may still send."""
        return len(self._cuts)

    @property
    def needs_replay(self) -> bool:
        """The current turn must be (re)sent on the next live connection."""
        cur = self.current
        return cur is not None and cur.phase in (Phase.OPEN, Phase.HELD) and cur.origin is not Origin.SERVER

    def next_deadline(self) -> float | None:
        cur = self.current
        if cur is None:
            return None
        if cur.awaiting_reply and cur.progress_at is not None:
            if self.pending_calls:
                return None  # the service waits for our answers (a slow home tool): not its delay
            return cur.progress_at + self.reply_timeout_s
        if cur.phase is Phase.HELD and cur.ended_locally_at is not None:
            return cur.ended_locally_at + self.stale_s
        return None

    # ------------------------------------------------------------------ the client's side

    def start_activity(self, now: float, origin: Origin = Origin.VOICE) -> tuple[int, list[TurnEnded]]:
        """A new question begins; whatever was in flight is cut by it."""
        ended = self._cut_current(now, "a new question began")
        turn = Turn(self._next_id, origin, started_at=now)
        self._next_id += 1
        self.current = turn
        return turn.id, ended

    def end_activity(self, now: float, *, has_content: bool) -> list[TurnEnded]:
        """The user stopped; with nothing to send the turn ends here, off the wire."""
        cur = self.current
        if cur is None or cur.phase is not Phase.OPEN:
            return []
        cur.ended_locally_at = now
        if not has_content:
            return [self._end(cur, Outcome.EMPTY, "nothing was said")]
        cur.phase = Phase.HELD
        return []

    def delivered(self, now: float) -> None:
        """The current turn's end went out on a live connection."""
        cur = self.current
        if cur is not None and cur.phase is Phase.HELD:
            cur.phase = Phase.SUBMITTED
            cur.submitted_at = now
            cur.progress_at = now

    def cut(self, now: float, why: str) -> list[TurnEnded]:
        """The client abandons the reply in flight (a press, `ctl stop`); a question still
        being asked is not a reply and is left alone."""
        cur = self.current
        if cur is None or not cur.awaiting_reply:
            return []
        return self._cut_current(now, why)

    def tool_response_sent(self, ids: Iterable[str], now: float) -> None:
        for call_id in ids:
            self.pending_calls.discard(call_id)
        cur = self.current
        if cur is not None and cur.awaiting_reply:
            cur.progress_at = now

    def connection_lost(self, now: float) -> list[TurnEnded]:
        """The socket is gone: nothing is owed by the server any more."""
        self._cuts.clear()
        self.pending_calls.clear()
        cur = self.current
        if cur is None or not cur.in_flight:
            return []
        if cur.phase is Phase.REPLYING or (cur.phase is Phase.SUBMITTED and cur.heard):
            return [self._end(cur, Outcome.LOST, "the connection dropped during the reply")]
        if cur.phase is Phase.SUBMITTED:
            cur.phase = Phase.HELD  # not heard: ask again on the next connection
            cur.submitted_at = cur.progress_at = None
        return []

    def new_conversation(self, now: float) -> list[TurnEnded]:
        """Forget everything: the next connection starts a fresh context."""
        ended = self._cut_current(now, "new conversation")
        self._cuts.clear()
        self.pending_calls.clear()
        return ended

    def poll(self, now: float) -> list[TurnEnded]:
        """Deadlines that have passed: replies that never came, questions held too long."""
        cur = self.current
        deadline = self.next_deadline()
        if cur is None or deadline is None or now < deadline:
            return []
        if cur.phase is Phase.HELD:
            return [self._end(cur, Outcome.LOST, f"offline for more than {self.stale_s:g} s; the question was not sent")]
        self._remember_cut(cur.id)
        return [self._end(cur, Outcome.TIMED_OUT, f"no reply within {self.reply_timeout_s:g} s")]

    # ------------------------------------------------------------------ the server's side

    def server_event(self, event: p.ServerEvent, now: float) -> Attribution:
        """Attribute one server event; see the module docstring for the rules."""
        if isinstance(event, p.InputTranscript):
            cur = self.current
            if cur is not None and cur.in_flight and cur.origin is not Origin.SERVER:
                cur.heard = True
                if cur.awaiting_reply:
                    cur.progress_at = now
                return Attribution(cur.id)
            return Attribution(None)
        if isinstance(event, CONTENT_EVENTS):
            return self._content(event, now)
        if isinstance(event, p.Interrupted):
            return self._interrupted(now)
        if isinstance(event, p.TurnComplete):
            return self._turn_complete(event, now)
        if isinstance(event, p.ToolCallCancellation):
            self.pending_calls.difference_update(event.ids)
            return Attribution(None)
        return Attribution(None)

    def route(self, event: p.ServerEvent, now: float) -> list[Attributed | TurnEnded | p.ServerEvent]:
        """What the owner should see of one turn event, in order; empty for residue.

        Tool calls always pass (the service waits for their ids, whoever asked);
        a cancellation passes as it is; a turn's end follows its last event.
        """
        att = self.server_event(event, now)
        out: list[Attributed | TurnEnded | p.ServerEvent] = []
        if isinstance(event, p.ToolCallCancellation):
            out.append(event)
        elif isinstance(event, p.ToolCall) or not att.residue:
            out.append(Attributed(att.turn, event))
        out.extend(att.ended)
        return out

    def _content(self, event: p.ServerEvent, now: float) -> Attribution:
        if isinstance(event, p.ToolCall):
            # every call is answered, whoever it belongs to: the server waits for its id
            self.pending_calls.update(c.id for c in event.calls if c.id)
        cur = self.current
        if cur is not None and cur.awaiting_reply:
            self._cuts.clear()  # the server has moved on to this turn
            cur.phase = Phase.REPLYING
            cur.content = cur.heard = True
            cur.progress_at = now
            return Attribution(cur.id)
        if (cur is not None and cur.in_flight) or self._cuts:
            # the user is talking, or a cut reply is still ending
            return Attribution(None, residue=True)
        # nothing asked and nothing cut: the service speaks on its own
        turn = Turn(self._next_id, Origin.SERVER, started_at=now, phase=Phase.REPLYING,
                    submitted_at=now, progress_at=now, heard=True, content=True)
        self._next_id += 1
        self.current = turn
        return Attribution(turn.id)

    def _interrupted(self, now: float) -> Attribution:
        for c in self._cuts:
            if not c.confirmed:
                c.confirmed = True
                return Attribution(c.turn, residue=True)
        cur = self.current
        if cur is not None and cur.awaiting_reply:
            # the service cut its own reply; a turnComplete may still follow
            self._remember_cut(cur.id, confirmed=True)
            return Attribution(cur.id, ended=(self._end(cur, Outcome.INTERRUPTED, "interrupted by the service"),))
        return Attribution(None, residue=True)

    def _turn_complete(self, event: p.TurnComplete, now: float) -> Attribution:
        cur = self.current
        next_has_nothing = cur is None or not cur.in_flight or not cur.content
        if self._cuts and next_has_nothing:
            closed = self._cuts.popleft()
            return Attribution(closed.turn, residue=True)
        if cur is not None and cur.awaiting_reply:
            cur.heard = True
            cur.progress_at = now
            if event.interaction_status == "IN_PROGRESS":
                return Attribution(cur.id)
            detail = "reply complete" if cur.content else "the model answered without content"
            return Attribution(cur.id, ended=(self._end(cur, Outcome.COMPLETE, detail),))
        return Attribution(None, residue=True)

    # ------------------------------------------------------------------ helpers

    def _cut_current(self, now: float, why: str) -> list[TurnEnded]:
        cur = self.current
        if cur is None or not cur.in_flight:
            return []
        if cur.awaiting_reply:
            self._remember_cut(cur.id)
        return [self._end(cur, Outcome.INTERRUPTED, why)]

    def _remember_cut(self, turn: int, *, confirmed: bool = False) -> None:
        self._cuts.append(_Cut(turn, confirmed=confirmed))

    def _end(self, turn: Turn, outcome: Outcome, detail: str) -> TurnEnded:
        turn.phase = Phase.ENDED
        turn.outcome = outcome
        turn.detail = detail
        return TurnEnded(turn.id, outcome, detail)
