"""Named fakes for the conductor's collaborators (a last resort: these stand in for a
socket, a sound card and GPIO so that the state machine fails in milliseconds).

`FakeSession` keeps the real `Conversation` model, so turn attribution in these tests
is the product's own; only the socket is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from appliance.live import messages as p
from appliance.live.conversation import Conversation, TurnEnded
from appliance.live.connection import SessionStats
from appliance.live.link import LinkChanged, LinkState
from appliance.app.turntaking import Mode, TurnReport


class FakeSession:
    """The parts of LiveSession the conductor uses; the test plays the service."""

    def __init__(self, reply_timeout_s: float = 5.0) -> None:
        self.now = 0.0
        self.conversation = Conversation(reply_timeout_s=reply_timeout_s)
        self.state = LinkState.READY
        self.texts: list[str] = []
        self.last_error = ""
        self.stats = SessionStats()
        self.connected_at: float | None = 0.0
        self.conversation_started_at: float | None = 0.0
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.tool_responses: list[p.FunctionResponse] = []
        self.tries = 0
        self.new_conversations = 0
        self.started = False
        self._task: asyncio.Task[None] | None = None

    # what the conductor calls
    def start(self) -> None:
        self.started = True

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return []

    @property
    def busy(self) -> bool:
        return self.conversation.busy

    async def next_event(self, timeout: float | None = None) -> object:
        return await self.events.get()

    def cut_reply(self, why: str) -> list[TurnEnded]:
        return self.conversation.cut(self.now, why)

    def new_conversation(self) -> None:
        self.new_conversations += 1
        for e in self.conversation.new_conversation(self.now):
            self.events.put_nowait(e)

    def try_now(self) -> None:
        self.tries += 1

    async def send_tool_response(self, responses) -> int:
        self.tool_responses += list(responses)
        self.conversation.tool_response_sent([r.id for r in responses], self.now)
        return len(responses)

    # what the test does, as the uplink and the service would
    async def send_text(self, text: str) -> int:
        """A text turn (an announcement): the turn it started; the text is kept in `texts`."""
        self.texts.append(text)
        return self.ask()

    def ask(self) -> int:
        """The uplink sent a whole question."""
        turn, ended = self.conversation.start_activity(self.now)
        for e in ended:
            self.events.put_nowait(e)
        self.conversation.end_activity(self.now, has_content=True)
        self.conversation.delivered(self.now)
        return turn

    def serve(self, *events: p.ServerEvent) -> None:
        """Server events, routed by the real model, as LiveSession does."""
        for event in events:
            for item in self.conversation.route(event, self.now):
                self.events.put_nowait(item)

    def link(self, state: LinkState, reason: str = "") -> None:
        self.state = state
        self.events.put_nowait(LinkChanged(state, reason or state.value))

    def drop(self) -> None:
        for e in self.conversation.connection_lost(self.now):
            self.events.put_nowait(e)
        self.link(LinkState.OFFLINE, "connection lost without a close frame")

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for e in self.conversation.poll(self.now):
            self.events.put_nowait(e)


class FakeUplink:
    """Turn-taking stand-in: the test says what the user did."""

    def __init__(self) -> None:
        self.on_turn_end: Any = None
        self.on_sending: Any = None
        self.sending = False
        self.listening = False
        self.heard_speech = False
        self.presses: list[tuple[Mode, bool]] = []
        self.fail_with: BaseException | None = None
        self._stop = asyncio.Event()

    def press(self, mode: Mode | str = Mode.HOLD, *, barge_in: bool = False) -> None:
        self.listening = True
        self.presses.append((Mode(mode), barge_in))

    def release(self, *, tap: bool = False) -> None:
        pass

    def stop(self) -> None:
        self.listening = False

    def cancel(self) -> bool:
        self.listening = False
        return True

    async def run(self) -> None:
        await self._stop.wait()
        if self.fail_with is not None:
            raise self.fail_with

    def die(self, exc: BaseException) -> None:
        self.fail_with = exc
        self._stop.set()

    def report(self, turn: int | None, *, submitted: bool = True) -> None:
        """The user stopped talking; `turn` is the session's id for it."""
        self.listening = False
        barge = self.presses[-1][1] if self.presses else False
        self.on_turn_end(TurnReport(Mode.HOLD, 0.0, turn_id=turn, submitted=submitted, barge_in=barge,
                                    end_sent_at=0.0 if submitted else None))


@dataclass
class _Events:
    on_first_audio: Any = None
    on_drained: Any = None
    on_silent_after_flush: Any = None


@dataclass
class FakeSpeaker:
    """Records what would be heard; "plays" instantly: end_of_reply drains on the next loop turn."""

    events: _Events = field(default_factory=_Events)
    underruns: int = 0
    volume: int = 50
    fed: list[bytes] = field(default_factory=list)
    earcons: list[str] = field(default_factory=list)
    flushes: int = 0
    #: after_earcons of each new_reply(): whether that reply waits for the chime before it
    replies_after_earcons: list[bool] = field(default_factory=list)
    _started: bool = False

    def feed(self, pcm: bytes) -> None:
        self.fed.append(pcm)
        if not self._started:
            self._started = True
            asyncio.get_running_loop().call_soon(self.events.on_first_audio, 0.0)

    def end_of_reply(self) -> None:
        asyncio.get_running_loop().call_soon(self.events.on_drained, 0.0)

    def flush(self) -> None:
        self.flushes += 1
        self._started = False

    def new_reply(self, *, after_earcons: bool = False) -> None:
        self._started = False
        self.replies_after_earcons.append(after_earcons)

    def play_earcon(self, name: str) -> bool:
        self.earcons.append(name)
        return True

    def set_volume(self, level: int) -> None:
        self.volume = level


@dataclass
class FakeLights:
    shown: list[str] = field(default_factory=list)

    def show(self, state: str) -> None:
        self.shown.append(state)


@dataclass
class FakeTimers:
    """Named fake of the timer service's ringing side: which timers ring, and stopping them."""

    ringing: list[str] = field(default_factory=list)

    @property
    def any_ringing(self) -> bool:
        return bool(self.ringing)

    def stop_ringing(self) -> list[str]:
        stopped, self.ringing = self.ringing, []
        return stopped
