#!/usr/bin/env python3
"""Soak the whole appliance for a few hundred turns and print one table.

The `Daemon` runs in this process as `appliance run` would, with gpiozero's MockFactory for the button
and the LED, the virtual sound card (paced in real time, no PulseAudio) and the Live API emulator on
127.0.0.1.  First a plan of turns is built from the seed: hold-to-talk, tap-to-talk and barge-in, each
with generated speech, most with a fault before or during them (drops, goAway, offline windows, a
malformed frame, close 1011, a slow setup, a microphone or speaker that vanishes and comes back).  Then
an executor plays the plan through the control socket (or the GPIO pin) and checks every turn:

* the appliance is back at idle within the reply timeout plus a margin: never stuck;
* the utterance reached the emulator whole: the audio of its TurnRecord is at least as long as what was
  spoken (the pre-roll and post-roll only add to it);
* the reply was played: the conductor's turn outcome is "answered" and the virtual speaker put out
  sound for at least 80 % of the reply's length;
* a question that got no answer is lost, with the reason, unless a fault cut it (a drop during the
  reply, say, may end the turn with the error earcon: that is what the appliance promises);
* a question asked during an offline window is answered after the window (the README keeps it for
  20 s), and a press while offline makes the session retry at once.

RSS, open fds and threads are sampled at the start, half-way and at the end; ERROR log records and
tracebacks are counted.  Exit 0 when every acceptance line passes, 1 otherwise.

    .venv/bin/python scripts/soak.py               # 200 turns: about half an hour
    .venv/bin/python scripts/soak.py --quick       # 30 turns, shorter offline windows: a few minutes
    .venv/bin/python scripts/soak.py --turns 4 --seed 1 --verbose

A benchmark, not a test: the sound card runs in real time, so the run takes as long as the talking.
Every wait is bounded, and the whole run has a time budget; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import inspect
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from appliance.audio import speech  # noqa: E402
from appliance.audio.virtual_card import MIC_NAME, SPEAKER_NAME, VirtualCard  # noqa: E402
from appliance.app.conductor import State  # noqa: E402
from appliance.settings.schema import (  # noqa: E402
    AudioConfig, ButtonConfig, Config, ControlConfig, LedsConfig, LiveConfig, StateConfig,
)
from appliance.ipc.client import request  # noqa: E402
from appliance.app.daemon import Daemon  # noqa: E402
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario  # noqa: E402
from appliance.live.link import LinkState  # noqa: E402

# ---------------------------------------------------------------------------------------------- settings

REPLY_TIMEOUT_S = 20.0  # live.reply_timeout_s, the default
SETTLE_MARGIN_S = 10.0  # on top of the reply timeout, before a turn counts as stuck
MAX_BACKOFF_S = 30.0  # the transient backoff's cap: how late a retry may come after an offline window
DEVICE_BACK_S = 7.0  # stall detection (2 s) plus the longest reopen interval (5 s), appliance.audio.stream
TURN_BUDGET_S = 150.0  # one turn, everything included; past it the turn is abandoned as stuck
MAX_STUCK_IN_A_ROW = 3  # then the run stops: the rest would only count the same failure again
LEAD_IN_S = 0.2  # the user starts talking this long after pressing (as in `appliance demo`)
UTTERANCE_TOLERANCE_S = 0.06  # resampling edges; the pre/post-roll only ever add audio
AUDIBLE_SHARE = 0.8  # of a reply's length the speaker must have put out as sound
LOUD_PEAK = 0  # int16 LSBs: a 20 ms speaker block with any sample above this counts as sound (idle is 0)
RSS_BUDGET_MB = 5.0  # RSS growth allowed in the second half
FLAT_FDS = 2  # growth in the second half still called flat
FLAT_THREADS = 2
RETRY_AT_ONCE_S = 1.0  # a press while offline must start a connection attempt within this
FAULT_SHARE = 0.6  # of the turns (all but the first) that get a fault
METER_POLL_S = 0.25
SPEAKER_RECORD_S = 3.0  # the virtual speaker keeps this much; the meter reads it every METER_POLL_S
EMULATOR_PACE = 1.7  # replies stream 1.7x faster than real time, like the service
BUTTON_PIN, LED_PIN = 17, 12
WARM_UP_TURNS = 2  # fault-free turns before the start sample (first-use allocations), not in the table
FINDINGS_SHOWN = 8
LOG_LINES_PER_FINDING = 40

PHRASES = (
    "How long do I boil an egg?",
    "What can I make with eggs, spinach and a bit of cheese?",
    "How many grams are in a cup of flour?",
    "Is rice that was left out overnight still safe to eat?",
    "What temperature should the oven be for a roast chicken?",
    "Can I use olive oil instead of butter in a cake?",
    "How do I keep basil fresh?",
    "Set a timer for the pasta, nine minutes.",
)

# ---------------------------------------------------------------------------------------------- the plan

#: every fault the soak injects, as (kind, phase); each appears equally often
FAULT_MENU: tuple[tuple[str, str], ...] = (
    ("drop", "idle"), ("drop", "utterance"), ("drop", "reply"),
    ("goaway", "idle"), ("goaway", "utterance"), ("goaway", "reply"),
    ("offline", "idle"), ("offline", "asked"),
    ("malformed", "idle"), ("malformed", "reply"),
    ("close1011", "idle"), ("close1011", "reply"),
    ("slow-setup", "idle"),
    ("mic", "idle"), ("mic", "utterance"),
    ("speaker", "idle"), ("speaker", "reply"),
)
FAULT_NAMES = {
    "drop": "drop", "goaway": "goAway", "offline": "offline window", "malformed": "malformed frame",
    "close1011": "close 1011", "slow-setup": "slow setup", "mic": "microphone vanishes",
    "speaker": "speaker vanishes",
}
PHASE_NAMES = {"idle": "idle", "utterance": "mid-utterance", "reply": "mid-reply", "asked": "asked during it"}
#: faults that may legitimately cut the question or its reply (the turn may end with the error earcon)
MAY_CUT = frozenset({
    ("drop", "reply"), ("close1011", "reply"), ("speaker", "reply"), ("mic", "utterance"),
    ("goaway", "utterance"), ("goaway", "reply"),
})
DEVICE_FAULTS = frozenset({"mic", "speaker"})


@dataclass(frozen=True)
class Fault:
    kind: str
    phase: str  # idle (before the press), utterance, reply, asked (offline window with the question inside)
    seconds: float = 0.0  # offline window, device absence, goAway time left, setup delay
    fraction: float = 0.5  # how far into the utterance or reply; the drop point of drop-mid-reply
    lead_s: float = 0.0  # offline: press this long after the window starts (asked) or ends (idle)

    @property
    def label(self) -> str:
        return f"{FAULT_NAMES[self.kind]} ({PHASE_NAMES[self.phase]})"

    @property
    def may_cut(self) -> bool:
        return (self.kind, self.phase) in MAY_CUT


@dataclass(frozen=True)
class TurnPlan:
    index: int
    gesture: str  # hold | tap | barge (a tap, then a hold-to-talk barge-in during the reply)
    via: str  # ctl (the control socket) | gpio (the mock pin)
    phrase: int
    second_phrase: int  # the barge-in's question
    reply: str  # echo | tone: the emulator's reply, for connections opened from this turn on
    tone_s: float
    gap_s: float  # quiet before the press
    release_after_s: float  # hold-to-talk: from the end of speech to the release
    barge_after_s: float  # barge-in: from the reply starting to the press
    fault: Fault | None

    def describe(self) -> str:
        fault = self.fault.label if self.fault else "no fault"
        return f"{self.gesture} via {self.via}, {fault}"


def warm_up_plan(seed: int) -> list[TurnPlan]:
    """A hold and a tap without faults, so that first-use allocations happen before the start sample."""
    rng = random.Random(f"warm-up {seed}")
    return [TurnPlan(index=-WARM_UP_TURNS + i, gesture=gesture, via="ctl", phrase=rng.randrange(len(PHRASES)),
                     second_phrase=0, reply=reply, tone_s=1.5, gap_s=0.3, release_after_s=0.1, barge_after_s=0.3,
                     fault=None)
            for i, (gesture, reply) in enumerate((("hold", "echo"), ("tap", "tone"))[:WARM_UP_TURNS])]


def _fault(rng: random.Random, kind: str, phase: str, quick: bool, offline_s: float | None) -> Fault:
    fraction = rng.uniform(0.2, 0.8)
    if kind == "offline":
        seconds = rng.uniform(2.0, 6.0) if quick else rng.uniform(3.0, 15.0)
        seconds = seconds if offline_s is None else offline_s
        lead = rng.uniform(0.3, 1.0) if phase == "asked" else rng.uniform(0.0, 1.5)
        return Fault(kind, phase, seconds, fraction, lead)
    seconds = {
        "goaway": rng.uniform(1.0, 5.0),
        "slow-setup": rng.uniform(1.5, 4.0),
        "mic": rng.uniform(1.0, 4.0),
        "speaker": rng.uniform(1.0, 4.0),
    }.get(kind, 0.0)
    return Fault(kind, phase, seconds, fraction)


def build_plan(seed: int, turns: int, quick: bool, menu: tuple[tuple[str, str], ...] = FAULT_MENU,
               offline_s: float | None = None) -> list[TurnPlan]:
    """The whole run, decided from the seed before anything starts.

    `menu` narrows the faults (for a reproduction), `offline_s` fixes the offline windows' length.
    """
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(1, turns), k=min(turns - 1, round(turns * FAULT_SHARE)))) if turns > 1 else []
    kinds: list[tuple[str, str]] = []
    while len(kinds) < len(slots):
        batch = list(menu)
        rng.shuffle(batch)
        kinds.extend(batch)
    faults = dict(zip(slots, kinds))
    plan: list[TurnPlan] = []
    for index in range(turns):
        chosen = faults.get(index)
        fault = _fault(rng, *chosen, quick, offline_s) if chosen else None
        if fault is None or fault.phase == "idle":
            gesture = rng.choices(("hold", "tap", "barge"), weights=(4, 3, 3))[0]
        else:  # a fault during the question or the reply: one question, so it is clear what it cut
            gesture = rng.choice(("hold", "tap"))
        phrase = rng.randrange(len(PHRASES))
        plan.append(TurnPlan(
            index=index,
            gesture=gesture,
            via="gpio" if rng.random() < 0.3 else "ctl",
            phrase=phrase,
            second_phrase=(phrase + rng.randrange(1, len(PHRASES))) % len(PHRASES),
            reply="echo" if rng.random() < 0.6 else "tone",
            tone_s=rng.uniform(1.0, 2.5),
            gap_s=rng.uniform(0.3, 1.5),
            release_after_s=rng.uniform(0.05, 0.35),
            barge_after_s=rng.uniform(0.2, 0.7),
            fault=fault,
        ))
    return plan


# ---------------------------------------------------------------------------------------------- observers


class LogWatch(logging.Handler):
    """Counts ERROR records and tracebacks; keeps recent lines and the session's link changes."""

    def __init__(self, t0: float) -> None:
        super().__init__(logging.DEBUG)
        self.t0 = t0
        self.errors = 0
        self.tracebacks = 0
        self.warnings = 0
        self.error_lines: collections.deque[str] = collections.deque(maxlen=20)
        self.lines: collections.deque[tuple[float, str]] = collections.deque(maxlen=3000)
        #: (time, new link state) of every link change the session logged
        self.links: collections.deque[tuple[float, str]] = collections.deque(maxlen=2000)

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is worth a line, not a crash
            text = f"{record.msg!r} {record.args!r}"
        line = f"+{now - self.t0:8.2f} {record.levelname:<7} {record.name}: {text}"
        if record.exc_info and record.exc_info[0] is not None:
            self.tracebacks += 1
            line += f" [{record.exc_info[0].__name__}: {record.exc_info[1]}]"
        if record.levelno >= logging.ERROR:
            self.errors += 1
            self.error_lines.append(line)
        elif record.levelno >= logging.WARNING:
            self.warnings += 1
        self.lines.append((now, line))
        if record.name == "appliance.live.connection" and record.msg == "link %s -> %s: %s":
            self.links.append((now, str(record.args[1])))  # type: ignore[index]

    def between(self, start: float, end: float) -> list[str]:
        return [line for at, line in list(self.lines) if start <= at <= end]


class StateLog:
    """The conductor's state changes with their times (chained before the daemon's own callback)."""

    def __init__(self, conductor: Any) -> None:
        self.changes: collections.deque[tuple[float, State, str]] = collections.deque(maxlen=2000)
        previous = conductor.on_state

        def on_state(state: State, reason: str) -> None:
            self.changes.append((time.monotonic(), state, reason))
            if previous is not None:
                previous(state, reason)

        conductor.on_state = on_state

    def first(self, state: State, after: float) -> float | None:
        return next((at for at, s, _ in list(self.changes) if s is state and at >= after), None)


class SpeakerMeter:
    """How much sound the virtual speaker put out, in 20 ms blocks, read from its short recording."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.seen = card.output_frames_played
        self.loud_blocks = 0
        self.missed_frames = 0
        self.block = max(1, card.speaker.rate // 50)

    @property
    def loud_s(self) -> float:
        return self.loud_blocks * 0.02

    def poll(self) -> None:
        played = self.card.output_frames_played
        new = played - self.seen
        if new < self.block:
            return
        recording = self.card.recorded()
        take = min(new, recording.shape[0]) // self.block * self.block
        self.missed_frames += max(0, new - recording.shape[0])
        self.seen = played - (min(new, recording.shape[0]) - take)
        if take == 0:
            return
        mono = recording[recording.shape[0] - take:, 0].astype(np.int32)
        peaks = np.abs(mono.reshape(-1, self.block)).max(axis=1)
        self.loud_blocks += int(np.count_nonzero(peaks > LOUD_PEAK))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(METER_POLL_S)
            self.poll()


@dataclass(frozen=True)
class Resources:
    rss_kb: int
    fds: int
    threads: int

    @classmethod
    def sample(cls) -> Resources:
        gc.collect()
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields["VmRSS"].split()[0])
        threads = int(fields["Threads"].split()[0])
        return cls(rss, len(os.listdir("/proc/self/fd")), threads)


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Question:
    role: str  # "question" (the turn's last one) or "barged" (the one a barge-in interrupted)
    phrase: int
    spoken_s: float
    pressed_at: float = 0.0
    offline_at_press: bool = False
    emu_before: list[Any] = field(default_factory=list, repr=False)
    heard_s: float | None = None  # the user audio of the emulator's TurnRecord
    reply_s: float = 0.0  # the reply audio the emulator sent
    records: int = 0  # TurnRecords of this question (more than one: it was asked again after a drop)
    outcome: str | None = None  # the conductor's turn outcome
    status: str = ""  # answered | interrupted | cut by a fault | lost
    reason: str = ""

    @property
    def whole(self) -> bool:
        return self.heard_s is not None and self.heard_s >= self.spoken_s - UTTERANCE_TOLERANCE_S


@dataclass
class TurnResult:
    plan: TurnPlan
    started: float
    ended: float = 0.0
    settled: bool = True
    state_found: str = ""
    fault_injected: bool = False
    fault_skipped: str = ""
    questions: list[Question] = field(default_factory=list)
    loud_s: float = 0.0
    window_s: float | None = None
    window_end: float | None = None
    answer_after_window_s: float | None = None
    retry_s: list[float] = field(default_factory=list)
    barged: bool = False
    unasked_replies: int = 0
    last_error: str = ""
    notes: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    @property
    def final(self) -> Question | None:
        return self.questions[-1] if self.questions else None

    @property
    def failed(self) -> bool:
        return not self.settled or any(q.status == "lost" for q in self.questions)


class SoakError(Exception):
    """The rig itself failed (not the appliance): the run stops and says why."""


# ---------------------------------------------------------------------------------------------- the rig


def wire_audio(daemon_kwargs: dict[str, Any], card: VirtualCard) -> str:
    """Hand the virtual card to the Daemon, as a borrowed PortAudioHost: the one place that wires audio.

    Returns how it was wired, for the table's header.
    """
    if "audio_host" not in inspect.signature(Daemon.__init__).parameters:
        raise SoakError("this build's Daemon takes no audio_host; the soak cannot give it the virtual card")
    from appliance.audio.portaudio_host import PortAudioHost

    daemon_kwargs["audio_host"] = PortAudioHost.borrowing(card)
    return "Daemon(audio_host=PortAudioHost.borrowing(VirtualCard()))"


def device_faults_missing(daemon: Daemon, card: VirtualCard) -> str:
    """Why a vanishing microphone or speaker cannot be injected in this build ("" when it can)."""
    if not (callable(getattr(card, "unplug", None)) and callable(getattr(card, "plug", None))):
        return "the virtual card cannot unplug a device"
    capture, player = daemon.capture, daemon.player
    if getattr(capture, "on_presence", None) is None or getattr(player, "on_presence", None) is None:
        return "the daemon does not tell the conductor when a device goes away (no on_presence wiring)"
    if not (getattr(capture, "watching", False) and getattr(player, "watching", False)):
        return "the daemon does not watch both devices (no watch() for the microphone and the speaker)"
    return ""


def soak_config(emu: Emulator, tmp: Path) -> Config:
    return dataclasses.replace(
        Config(),
        live=dataclasses.replace(LiveConfig(), endpoint=emu.url, reply_timeout_s=REPLY_TIMEOUT_S),
        audio=dataclasses.replace(AudioConfig(), input_device=MIC_NAME, output_device=SPEAKER_NAME),
        button=dataclasses.replace(ButtonConfig(), pin=BUTTON_PIN),
        leds=dataclasses.replace(LedsConfig(), kind="pwm", pin=LED_PIN),
        control=ControlConfig(socket=str(tmp / "control.sock")),
        state=StateConfig(dir=str(tmp / "state")),
    )


def emulator_config() -> EmulatorConfig:
    # small record caps: the emulator lives in this process, and its memory must not pass for the daemon's
    return EmulatorConfig(pace=EMULATOR_PACE, max_received=100, max_turns=6, max_connections=64, max_handles=256)


# ---------------------------------------------------------------------------------------------- the executor


@dataclass
class _Ctx:
    """What one turn's waits depend on."""

    last_action: float = 0.0
    window_end: float | None = None
    device_back: float | None = None
    mark: int = 0  # conductor.seq before the last question's press


class Executor:
    def __init__(self, rig: Rig, plan: list[TurnPlan], verbose: bool) -> None:
        self.rig = rig
        self.plan = plan
        self.verbose = verbose
        self.emu = rig.emu
        self.card = rig.card
        self.daemon = rig.daemon
        self.conductor = rig.daemon.conductor
        self.session = self.conductor.session
        self.speech = rig.speech
        self.faults_injected: collections.Counter[str] = collections.Counter()
        self.faults_skipped: collections.Counter[str] = collections.Counter()

    # -- the button

    async def button(self, via: str, action: str) -> None:
        if via == "gpio":
            pin = self.rig.gpio.pin(BUTTON_PIN)
            if action == "press":
                pin.drive_low()
            elif action == "release":
                pin.drive_high()
            else:
                pin.drive_low()
                await asyncio.sleep(0.08)
                pin.drive_high()
            return
        reply = await request(self.daemon.control_path, action)
        if not reply.get("ok"):
            raise SoakError(f"ctl {action} was refused: {reply}")

    # -- one turn

    async def run_turn(self, plan: TurnPlan) -> TurnResult:
        result = TurnResult(plan, started=time.monotonic())
        fault = plan.fault
        if fault is not None and fault.kind in DEVICE_FAULTS and self.rig.device_note:
            result.fault_skipped = self.rig.device_note
            self.faults_skipped[fault.label] += 1
            fault = None
        before_metrics = list(self.conductor.turns)
        loud_before = self.rig.meter.loud_s
        # the reply for connections opened from now on (the open one keeps its own)
        self.emu.scenario = Scenario(reply=plan.reply, tone_seconds=plan.tone_s)
        ctx = _Ctx(last_action=time.monotonic())
        try:
            async with asyncio.timeout(TURN_BUDGET_S):
                await asyncio.sleep(plan.gap_s)
                await self._before(fault, plan, ctx, result)
                if plan.gesture == "barge":
                    await self._barge(plan, ctx, result)
                else:
                    await self._ask(plan, plan.gesture, plan.phrase, "question", fault, ctx, result)
                await self._during_reply(fault, ctx, result)
                result.settled = await self._settle(ctx, result)
        except TimeoutError:
            result.settled = False
            result.state_found = self.conductor.state.value
            result.notes.append(f"the turn took longer than its budget of {TURN_BUDGET_S:g} s")
        if fault is not None and result.fault_injected:
            self.faults_injected[fault.label] += 1
        elif fault is not None and not result.fault_skipped:
            result.notes.append(f"{fault.label} was not injected (no moment for it came)")
        self.rig.meter.poll()
        result.loud_s = self.rig.meter.loud_s - loud_before
        result.ended = time.monotonic()
        self._collect(result, before_metrics, ctx)
        result.log_lines = self.rig.logs.between(result.started, result.ended)
        judge(result)
        # kept only for a finding's report
        result.log_lines = result.log_lines[-LOG_LINES_PER_FINDING:] if result.failed else []
        if not result.settled:
            await self._recover(result)
        return result

    async def _before(self, fault: Fault | None, plan: TurnPlan, ctx: _Ctx, result: TurnResult) -> None:
        """Faults before the press (and the offline window a question is asked in)."""
        if fault is None:
            return
        emu, kind = self.emu, fault.kind
        if kind == "drop" and fault.phase == "idle":
            result.fault_injected = bool(self._open_connections())
            await emu.drop_all()
        elif kind == "drop" and fault.phase == "reply":
            # armed now, it drops the next reply once that fraction of it went out
            result.fault_injected = await emu.drop_mid_reply(fault.fraction) > 0
        elif kind == "goaway" and fault.phase == "idle":
            result.fault_injected = await emu.send_go_away(fault.seconds) > 0
        elif kind == "malformed" and fault.phase == "idle":
            result.fault_injected = await emu.send_malformed() > 0
        elif kind == "close1011" and fault.phase == "idle":
            result.fault_injected = await emu.close_1011() > 0
        elif kind == "slow-setup":
            emu.scenario = Scenario(reply=plan.reply, tone_seconds=plan.tone_s,
                                    setup_delay_s=fault.seconds, fault_connections=1)
            result.fault_injected = bool(self._open_connections())
            await emu.drop_all()  # the reconnect meets the slow setup; the press comes during it
        elif kind == "offline":
            window = fault.seconds
            if fault.phase == "asked":  # the whole question fits in the window, with a second to spare
                window = max(window, fault.lead_s + LEAD_IN_S + self.speech[plan.phrase][1] + 1.5)
            await emu.go_offline(window)
            result.fault_injected = True
            result.window_s = window
            ctx.window_end = result.window_end = time.monotonic() + window
            if fault.phase == "asked":
                await asyncio.sleep(fault.lead_s)
            else:
                await asyncio.sleep(window + fault.lead_s)
                if emu.offline:
                    raise SoakError("the emulator did not come back after its offline window")
        elif kind in DEVICE_FAULTS and fault.phase == "idle":
            name = MIC_NAME if kind == "mic" else SPEAKER_NAME
            self.card.unplug(name)
            result.fault_injected = True
            await asyncio.sleep(fault.seconds)
            self.card.plug(name)
            ctx.device_back = time.monotonic()
            # a user presses once the box shows it is back
            if not await self._wait_idle(ctx.device_back + DEVICE_BACK_S + SETTLE_MARGIN_S):
                result.settled = False
                result.state_found = self.conductor.state.value
                result.notes.append(f"not idle {DEVICE_BACK_S + SETTLE_MARGIN_S:g} s after the {kind} came back")

    async def _barge(self, plan: TurnPlan, ctx: _Ctx, result: TurnResult) -> None:
        await self._ask(plan, "tap", plan.phrase, "barged", None, ctx, result)
        try:
            await self.conductor.wait_state(State.SPEAKING, REPLY_TIMEOUT_S + 5, since=ctx.mark)
        except TimeoutError:
            result.notes.append("the first reply never started; no barge-in")
            result.questions[0].role = "question"  # judged as the turn's only question
            return
        await asyncio.sleep(plan.barge_after_s)
        result.barged = self.conductor.state is State.SPEAKING
        await self._ask(plan, "hold", plan.second_phrase, "question", None, ctx, result)

    async def _ask(self, plan: TurnPlan, gesture: str, phrase: int, role: str, fault: Fault | None,
                   ctx: _Ctx, result: TurnResult) -> None:
        pcm, spoken_s = self.speech[phrase]
        question = Question(role, phrase, spoken_s, emu_before=list(self.emu.turns))
        result.questions.append(question)
        ctx.mark = self.conductor.seq
        question.offline_at_press = self.session.state is LinkState.OFFLINE
        question.pressed_at = time.monotonic()
        await self.button(plan.via, "press" if gesture == "hold" else "tap")
        await asyncio.sleep(LEAD_IN_S)
        self.card.queue_pcm16(pcm, speech_rate())
        during = None
        if fault is not None and fault.phase == "utterance":
            during = asyncio.create_task(self._during_utterance(fault, spoken_s, ctx, result))
        drained = await asyncio.to_thread(self.card.wait_input_drained, spoken_s + 30.0)
        if during is not None:
            await during
        if not drained:
            result.notes.append("the virtual microphone did not take the whole utterance")
        ctx.last_action = time.monotonic()
        if gesture == "hold":
            await asyncio.sleep(plan.release_after_s)
            await self.button(plan.via, "release")
            ctx.last_action = time.monotonic()

    async def _during_utterance(self, fault: Fault, spoken_s: float, ctx: _Ctx, result: TurnResult) -> None:
        await asyncio.sleep(fault.fraction * spoken_s)
        if fault.kind == "drop":
            result.fault_injected = bool(self._open_connections())
            await self.emu.drop_all()
        elif fault.kind == "goaway":
            result.fault_injected = await self.emu.send_go_away(fault.seconds) > 0
        elif fault.kind == "mic":
            self.card.unplug(MIC_NAME)
            result.fault_injected = True
            await asyncio.sleep(fault.seconds)
            self.card.plug(MIC_NAME)
            ctx.device_back = time.monotonic()

    async def _during_reply(self, fault: Fault | None, ctx: _Ctx, result: TurnResult) -> None:
        if fault is None or fault.phase != "reply" or fault.kind == "drop":
            return
        try:
            await self.conductor.wait_state(State.SPEAKING, REPLY_TIMEOUT_S + 5, since=ctx.mark)
        except TimeoutError:
            return  # never speaking: the judge says why; the fault had no moment
        await asyncio.sleep(fault.fraction * 0.6)
        emu = self.emu
        if fault.kind == "goaway":
            result.fault_injected = await emu.send_go_away(fault.seconds) > 0
        elif fault.kind == "malformed":
            result.fault_injected = await emu.send_malformed() > 0
        elif fault.kind == "close1011":
            result.fault_injected = await emu.close_1011() > 0
        elif fault.kind == "speaker":
            self.card.unplug(SPEAKER_NAME)
            result.fault_injected = True
            await asyncio.sleep(fault.seconds)
            self.card.plug(SPEAKER_NAME)
            ctx.device_back = time.monotonic()

    def _open_connections(self) -> int:
        return sum(1 for c in self.emu.connections if not c.closed)

    def _idle(self) -> bool:
        c = self.conductor
        return (c.state is State.IDLE and not c.uplink.listening and self.card.queued_input_seconds == 0
                and self.daemon.capture.present and self.daemon.player.present)

    async def _wait_idle(self, deadline: float) -> bool:
        while not self._idle():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _settle(self, ctx: _Ctx, result: TurnResult) -> bool:
        """Back at idle within the reply timeout plus a margin (later only when a fault explains it)."""
        deadline = ctx.last_action + REPLY_TIMEOUT_S + SETTLE_MARGIN_S
        if ctx.window_end is not None:  # the link comes back within the backoff's cap
            deadline = max(deadline, ctx.window_end + MAX_BACKOFF_S + SETTLE_MARGIN_S)
        if ctx.device_back is not None:
            deadline = max(deadline, ctx.device_back + DEVICE_BACK_S + SETTLE_MARGIN_S)
        if await self._wait_idle(deadline):
            return result.settled
        result.state_found = self.conductor.state.value
        result.notes.append(f"not idle {deadline - ctx.last_action:.0f} s after the last press or release "
                            f"(state {result.state_found}, link {self.session.state.value})")
        return False

    async def _recover(self, result: TurnResult) -> None:
        """After a stuck turn: what an owner would do (let go, `ctl stop`), so the next turn can start."""
        try:
            self.rig.gpio.pin(BUTTON_PIN).drive_high()
            await request(self.daemon.control_path, "release")
            await request(self.daemon.control_path, "stop")
        except Exception as exc:  # noqa: BLE001 - recovery is best effort; the turn is counted already
            result.notes.append(f"recovery failed: {exc}")
        await self._wait_idle(time.monotonic() + 15.0)

    # -- what happened

    def _collect(self, result: TurnResult, before_metrics: list[Any], ctx: _Ctx) -> None:
        result.last_error = self.conductor.last_error or ""
        metrics = [m for m in self.conductor.turns if not any(m is b for b in before_metrics)]
        result.unasked_replies = sum(1 for m in metrics if m.mode == "service")
        asked = [m for m in metrics if m.mode != "service"]
        questions = result.questions
        if len(questions) == 2:  # a barge-in: the interrupted question's metrics come first
            if len(asked) >= 2:
                pairs = [(questions[0], asked[0]), (questions[1], asked[-1])]
            elif len(asked) == 1:
                pairs = [(questions[1] if asked[0].barge_in else questions[0], asked[0])]
            else:
                pairs = []
        else:
            pairs = [(questions[0], asked[-1])] if questions and asked else []
        for question, metric in pairs:
            question.outcome = metric.outcome
        emu_now = list(self.emu.turns)
        for i, question in enumerate(questions):
            upto = questions[i + 1].emu_before if i + 1 < len(questions) else emu_now
            records = [t for t in upto if t.source == "audio" and not any(t is b for b in question.emu_before)]
            question.records = len(records)
            if records:
                question.heard_s = len(records[-1].user_pcm) / 2 / speech_rate()
                question.reply_s = len(records[-1].reply_pcm) / 2 / 24000
            if question.offline_at_press:
                # the session's next link change after the press: a connection attempt, unless it had
                # just come back by itself (then there was nothing to retry)
                change = next(((at, state) for at, state in list(self.rig.logs.links)
                               if at >= question.pressed_at), None)
                if change is None:
                    result.retry_s.append(float("inf"))
                elif change[1] == "connecting":
                    result.retry_s.append(change[0] - question.pressed_at)
            question.emu_before = []  # the references were only for telling records apart
        final = result.final
        if result.window_end is not None and final is not None and final.outcome == "answered":
            spoke = self.rig.states.first(State.SPEAKING, final.pressed_at)
            if spoke is not None:
                result.answer_after_window_s = spoke - result.window_end


def judge(result: TurnResult) -> None:
    """Each question: answered, interrupted (by the barge-in), cut by a fault, or lost (and why)."""
    fault = result.plan.fault if result.fault_injected else None
    excused = fault is not None and fault.may_cut
    for question in result.questions:
        reason = ""
        if question.role == "barged":
            if question.records == 0:
                reason = "never reached the emulator"
            elif not question.whole:
                reason = f"reached the emulator cut short ({question.heard_s:.2f} of {question.spoken_s:.2f} s)"
            question.status, question.reason = ("lost", reason) if reason else ("interrupted", "")
            continue
        outcome = question.outcome
        if outcome is None:
            ignored = [line for line in result.log_lines or [] if "press ignored" in line]
            reason = ignored[-1].split(": ", 1)[-1] if ignored else "no turn came of the press"
        elif outcome == "answered":
            if question.records == 0:
                reason = "answered, but the emulator never had the question"
            elif not question.whole:
                reason = f"utterance cut short ({question.heard_s:.2f} of {question.spoken_s:.2f} s reached the emulator)"
            elif result.loud_s < AUDIBLE_SHARE * question.reply_s:
                reason = (f"answered, but the speaker put out only {result.loud_s:.1f} s of sound "
                          f"for a {question.reply_s:.1f} s reply")
        elif outcome == "no speech":
            gone = any("conductor: no microphone" in line for line in result.log_lines or [])
            reason = ("the microphone was reported missing during the question: nothing was sent" if gone
                      else "no speech heard: nothing was sent")
        elif outcome == "no reply in time":
            reason = f"no reply within {REPLY_TIMEOUT_S:g} s"
        elif "offline for more than" in result.last_error:
            reason = f"held offline too long: {result.last_error}"
        elif outcome == "reply lost":
            reason = f"reply lost: {result.last_error or 'no reason given'}"
        else:
            reason = outcome
        if not result.settled and not reason:
            reason = ""  # answered; being stuck afterwards is counted on its own
        if not reason:
            question.status = "answered"
        elif excused:
            question.status, question.reason = "cut by a fault", reason
        else:
            question.status, question.reason = "lost", reason
        if result.fault_skipped == "" and result.window_end is not None and question.status == "answered":
            after = result.answer_after_window_s
            if after is not None and after < 0:
                question.status, question.reason = "lost", "answered before the link was back (the soak is broken)"


def _short_reason(reason: str) -> str:
    """The reason without its numbers, so that the same failure counts once."""
    for prefix in ("held offline too long", "reply lost", "utterance cut short", "reached the emulator cut short",
                   "answered, but the speaker"):
        if reason.startswith(prefix):
            return prefix
    return reason


def speech_rate() -> int:
    return 16000


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Rig:
    emu: Emulator
    card: VirtualCard
    daemon: Daemon
    task: asyncio.Task[int]
    gpio: Any
    logs: LogWatch
    speech: list[tuple[bytes, float]]
    voice: str
    wiring: str
    states: StateLog = field(init=False)
    meter: SpeakerMeter = field(init=False)
    device_note: str = ""


@dataclass
class Run:
    seed: int
    turns: int
    quick: bool
    results: list[TurnResult] = field(default_factory=list)
    warm_up: list[TurnResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, Resources] = field(default_factory=dict)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    device_note: str = ""
    wiring: str = ""
    options: str = ""  # the command-line options that narrow the plan, for the reproduce line
    voice: str = ""
    aborted: str = ""
    daemon_exit: int | None = None
    emulator_errors: int = 0
    session_stats: Any = None
    elapsed_s: float = 0.0
    logs: LogWatch | None = None


async def soak(seed: int, turns: int, quick: bool, verbose: bool,
               menu: tuple[tuple[str, str], ...] = FAULT_MENU, offline_s: float | None = None) -> Run:
    run = Run(seed, turns, quick)
    run.options = "".join(f" --only {k}:{p}" for k, p in menu) if menu != FAULT_MENU else ""
    run.options += f" --offline-s {offline_s:g}" if offline_s is not None else ""
    t0 = time.monotonic()
    plan = build_plan(seed, turns, quick, menu, offline_s)
    logs = LogWatch(t0)
    run.logs = logs
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(logs)
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(relativeCreated)9.0f %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(handler)
    os.environ["GEMINI_API_KEY"] = "soak-" + "key-only-for-the-emulator"  # never a real key on loopback

    voices: set[str] = set()
    speech_pool: list[tuple[bytes, float]] = []
    for text in PHRASES:
        pcm, how = speech.utterance(text, speech_rate())
        voices.add(how)
        speech_pool.append((pcm, len(pcm) / 2 / speech_rate()))
    run.voice = "/".join(sorted(voices))

    from gpiozero.pins.mock import MockFactory, MockPWMPin

    gpio = MockFactory(pin_class=MockPWMPin)
    card = VirtualCard(record_limit_s=SPEAKER_RECORD_S, seed=seed)
    budget_s = 120.0 + turns * (60.0 if not quick else 40.0)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        emu = Emulator(emulator_config(), Scenario())
        await emu.start()
        kwargs: dict[str, Any] = {"keyboard": False, "pin_factory": gpio, "printer": lambda _line: None}
        run.wiring = wire_audio(kwargs, card)
        daemon = Daemon(soak_config(emu, Path(tmp)), **kwargs)
        task = asyncio.create_task(daemon.run(), name="daemon")
        meter_task: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(30):
                while daemon.conductor is None or daemon.capture is None or not daemon.capture.present:
                    if task.done():
                        task.result()
                        raise SoakError("the daemon stopped while starting")
                    await asyncio.sleep(0.05)
                await daemon.conductor.wait_state(State.IDLE, 20)
            rig = Rig(emu, card, daemon, task, gpio, logs, speech_pool, run.voice, run.wiring)
            rig.states = StateLog(daemon.conductor)
            await asyncio.sleep(SPEAKER_RECORD_S + 0.5)  # the speaker's recording is full: its memory is flat
            rig.meter = SpeakerMeter(card)
            meter_task = asyncio.create_task(rig.meter.run(), name="speaker-meter")
            await asyncio.sleep(1.0)
            rig.meter.poll()
            if rig.meter.loud_blocks:  # the audibility check assumes an idle speaker is digitally silent
                run.notes.append(f"the idle speaker put out {rig.meter.loud_s:.2f} s of sound in 1 s; "
                                 "'replies played' over-counts")
            rig.device_note = run.device_note = device_faults_missing(daemon, card)
            executor = Executor(rig, plan, verbose)
            for turn in warm_up_plan(seed):
                result = await executor.run_turn(turn)
                run.warm_up.append(result)
                report_progress(result, len(plan), verbose)
            executor.faults_injected.clear()
            run.samples["start"] = Resources.sample()
            stuck_in_a_row = 0
            for turn in plan:
                if task.done():
                    run.aborted = f"the daemon stopped during the run (exit {task.result()})"
                    break
                if time.monotonic() - t0 > budget_s:
                    run.aborted = f"over the run's time budget of {budget_s:.0f} s"
                    break
                result = await executor.run_turn(turn)
                run.results.append(result)
                report_progress(result, len(plan), verbose)
                stuck_in_a_row = 0 if result.settled else stuck_in_a_row + 1
                if stuck_in_a_row >= MAX_STUCK_IN_A_ROW:
                    run.aborted = f"stuck {stuck_in_a_row} turns in a row; stopped at turn {turn.index + 1}"
                    break
                if len(run.results) == len(plan) // 2:
                    run.samples["half"] = Resources.sample()
            run.samples["end"] = Resources.sample()
            run.injected, run.skipped = executor.faults_injected, executor.faults_skipped
            run.session_stats = dataclasses.replace(daemon.conductor.session.stats)
        except SoakError as exc:
            run.aborted = str(exc)
        finally:
            if meter_task is not None:
                meter_task.cancel()
                await asyncio.gather(meter_task, return_exceptions=True)
            daemon.request_stop()
            try:
                run.daemon_exit = await asyncio.wait_for(task, 15)
            except (TimeoutError, Exception) as exc:  # noqa: BLE001 - reported, never hidden
                run.aborted = run.aborted or f"the daemon did not stop cleanly: {exc!r}"
            run.emulator_errors = len(emu.internal_errors)
            await emu.stop()
            card.terminate()
    root.removeHandler(logs)
    run.elapsed_s = time.monotonic() - t0
    return run


def report_progress(result: TurnResult, total: int, verbose: bool) -> None:
    plan = result.plan
    statuses = ", ".join(q.status + (f" ({q.reason})" if q.reason else "") for q in result.questions)
    which = f"turn {plan.index + 1}/{total}" if plan.index >= 0 else "warm-up turn"
    skipped = " (skipped: not available)" if result.fault_skipped else ""
    line = (f"soak: {which} {plan.describe()}{skipped}: {statuses or 'no question'}"
            f"{'' if result.settled else ' STUCK'} [{result.ended - result.started:.1f} s, "
            f"{result.loud_s:.1f} s of sound]")
    if verbose or result.failed or (plan.index + 1) % 10 == 0:
        print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the table


def render(run: Run) -> tuple[str, bool]:
    results = run.results
    questions = [q for r in results for q in r.questions]
    finals = [r.final for r in results if r.final is not None]
    whole = sum(1 for q in questions if q.whole)
    cut = [q for q in questions if q.status == "cut by a fault"]
    not_whole_unexcused = [q for r in results for q in r.questions
                           if not q.whole and not (q.status == "cut by a fault")]
    played = sum(1 for q in finals if q.status == "answered")
    expected = len(finals) - sum(1 for q in finals if q.status == "cut by a fault")
    stuck = sum(1 for r in results if not r.settled)
    lost = [q for q in questions if q.status == "lost"]
    reasons = collections.Counter(_short_reason(q.reason) for q in lost)
    gestures = collections.Counter(r.plan.gesture for r in results)
    barged = sum(1 for r in results if r.barged)
    retries = [s for r in results for s in r.retry_s]
    windows = [r for r in results if r.window_end is not None]
    asked_in_window = [r for r in windows if r.plan.fault is not None and r.plan.fault.phase == "asked"]
    after = [r.answer_after_window_s for r in asked_in_window if r.answer_after_window_s is not None]
    logs = run.logs
    samples = run.samples

    out: list[str] = []
    add = out.append
    add("")
    add(f"appliance soak: seed {run.seed}, {len(results)} of {run.turns} turns, {run.elapsed_s / 60:.1f} min, "
        f"{run.voice} voice, emulator pace {EMULATOR_PACE:g}")
    add(f"  audio wiring: {run.wiring}")
    warm_ok = sum(1 for r in run.warm_up if not r.failed)
    add(f"  warm-up: {len(run.warm_up)} fault-free turn(s) before the start sample, {warm_ok} answered")
    for note in run.notes:
        add(f"  note: {note}")
    if run.aborted:
        add(f"  ABORTED: {run.aborted}")
    add("")
    add("turns")
    rows = [
        ("turns", f"{len(results)} (hold {gestures['hold']}, tap {gestures['tap']}, barge-in {gestures['barge']}, "
                  f"{barged} of them cut a reply that was playing)"),
        ("questions asked", f"{len(questions)}"),
        ("utterances that reached the emulator whole", f"{whole}/{len(questions)}"),
        ("replies played", f"{played}/{expected} expected ({len(finals) - expected} cut by a fault)"),
        ("replies cut by a fault (allowed)", f"{sum(1 for q in cut)}"),
        ("turns that found the appliance not idle (stuck)", f"{stuck}"),
        ("lost questions", f"{len(lost)}"),
    ]
    rows += [(f"  lost: {reason}", f"{count}") for reason, count in reasons.most_common()]
    unasked = sum(r.unasked_replies for r in results)
    rows.append(("replies nobody asked for", f"{unasked}"))
    if run.session_stats is not None:
        s = run.session_stats
        rows.append(("connections / resumed / questions asked again",
                     f"{s.connections} / {s.resumed} / {s.replayed_turns}"))
        rows.append(("malformed frames skipped by the client", f"{s.protocol_errors}"))
    if windows:
        rows.append(("offline windows", f"{len(windows)} ({min(r.window_s or 0 for r in windows):.1f}-"
                                        f"{max(r.window_s or 0 for r in windows):.1f} s)"))
    if asked_in_window:
        answered = sum(1 for r in asked_in_window if r.final is not None and r.final.status == "answered")
        latency = f", answer {min(after):.1f}-{max(after):.1f} s after the link was back" if after else ""
        rows.append(("questions asked while offline, answered after the window",
                     f"{answered}/{len(asked_in_window)}{latency}"))
    if retries:
        worst = max(retries)
        rows.append(("press while offline -> connection attempt",
                     f"max {'never' if worst == float('inf') else f'{worst:.2f} s'} over {len(retries)} presses"))
    _table(add, rows)

    add("")
    add("faults injected")
    fault_rows = []
    for kind, phase in FAULT_MENU:
        label = Fault(kind, phase).label
        count = run.injected.get(label, 0)
        skipped = run.skipped.get(label, 0)
        fault_rows.append((label, f"{count}" + (f" (+{skipped} skipped)" if skipped else "")))
    _table(add, fault_rows)
    if run.device_note:
        add(f"  device faults: not available in this build ({run.device_note})")

    add("")
    add("resources                     start      half       end")
    def col(value: Callable[[Resources], str]) -> str:
        return "".join(f"{value(samples[k]) if k in samples else '-':>10}" for k in ("start", "half", "end"))
    add(f"  RSS (MB)                {col(lambda s: f'{s.rss_kb / 1024:.1f}')}")
    add(f"  open fds                {col(lambda s: str(s.fds))}")
    add(f"  threads                 {col(lambda s: str(s.threads))}")
    growth_mb = None
    if "half" in samples and "end" in samples:
        # past the highest RSS of the first half: a leak keeps climbing, while the allocator's
        # give and take (Python 3.13's more than 3.11's) swings a few MB either way
        peak_kb = max(samples[k].rss_kb for k in ("start", "half") if k in samples)
        growth_mb = (samples["end"].rss_kb - peak_kb) / 1024
        add(f"  RSS growth in the second half: {growth_mb:+.2f} MB (end against the first half's peak)")
    tracebacks = logs.tracebacks if logs else 0
    errors = logs.errors if logs else 0
    add(f"  tracebacks: {tracebacks}; ERROR records: {errors}; warnings: {logs.warnings if logs else 0}; "
        f"emulator internal errors: {run.emulator_errors}")

    checks: list[tuple[str, bool, str]] = []
    checks.append(("0 stuck", stuck == 0 and not run.aborted, f"{stuck}" + (" (run aborted)" if run.aborted else "")))
    checks.append(("0 lost questions", not lost, f"{len(lost)}"))
    checks.append(("every reply played except those a fault cut", played == expected and bool(results),
                   f"{played}/{expected}"))
    checks.append(("every utterance reached the emulator whole (except those a fault cut)",
                   not not_whole_unexcused, f"{len(not_whole_unexcused)} not whole"))
    if growth_mb is None:
        checks.append((f"RSS growth in the second half < {RSS_BUDGET_MB:g} MB", False, "not measured"))
    else:
        checks.append((f"RSS growth in the second half < {RSS_BUDGET_MB:g} MB", growth_mb < RSS_BUDGET_MB,
                       f"{growth_mb:+.2f} MB"))
    for name, attr, slack in (("fds", "fds", FLAT_FDS), ("threads", "threads", FLAT_THREADS)):
        if "half" in samples and "end" in samples:
            values = [getattr(samples[k], attr) for k in ("start", "half", "end")]
            ok = values[2] - values[1] <= slack
            checks.append((f"{name} flat (second half grows at most {slack})", ok, " -> ".join(map(str, values))))
        else:
            checks.append((f"{name} flat", False, "not measured"))
    checks.append(("no tracebacks, no ERROR records", tracebacks == 0 and errors == 0 and run.emulator_errors == 0,
                   f"{tracebacks} tracebacks, {errors} errors"))
    if retries:
        worst = max(retries)
        checks.append((f"a press while offline retries at once (< {RETRY_AT_ONCE_S:g} s)", worst < RETRY_AT_ONCE_S,
                       "never" if worst == float("inf") else f"max {worst:.2f} s"))
    if run.warm_up:
        checks.append(("the warm-up turns were answered", warm_ok == len(run.warm_up),
                       f"{warm_ok}/{len(run.warm_up)}"))
    checks.append(("the daemon ran to the end and exited 0", run.daemon_exit == 0 and not run.aborted,
                   f"exit {run.daemon_exit}"))
    add("")
    add("acceptance")
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        add(f"  {name:<{width}}  {'PASS' if ok else 'FAIL'}  {detail}")
    passed = all(ok for _, ok, _ in checks)
    add("")
    add(f"overall: {'PASS' if passed else 'FAIL'}")
    return "\n".join(out), passed


def _table(add: Callable[[str], None], rows: list[tuple[str, str]]) -> None:
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        add(f"  {name:<{width}}  {value}")


def render_findings(run: Run) -> str:
    failed = [r for r in run.warm_up + run.results if r.failed]
    if not failed:
        return ""
    out = ["", f"findings ({len(failed)} turn(s); the first {min(len(failed), FINDINGS_SHOWN)} shown)"]
    for result in failed[:FINDINGS_SHOWN]:
        plan = result.plan
        out.append("")
        which = f"turn {plan.index + 1}" if plan.index >= 0 else "warm-up turn"
        out.append(f"- {which} (reproduce: scripts/soak.py --seed {run.seed} --turns {run.turns}"
                   f"{' --quick' if run.quick else ''}{run.options}): {plan.describe()}")
        if plan.fault is not None:
            f = plan.fault
            window = f", window {result.window_s:.1f} s" if result.window_s is not None else ""
            out.append(f"  fault: {f.label}: seconds={f.seconds:.2f} fraction={f.fraction:.2f} lead={f.lead_s:.2f}"
                       f"{window}; injected={result.fault_injected}")
        for q in result.questions:
            heard = "never" if q.heard_s is None else f"{q.heard_s:.2f} s"
            out.append(f"  {q.role}: \"{PHRASES[q.phrase]}\" spoken {q.spoken_s:.2f} s, emulator heard {heard} "
                       f"({q.records} record(s)), outcome {q.outcome!r}, reply {q.reply_s:.2f} s: {q.status}"
                       f"{': ' + q.reason if q.reason else ''}")
        if not result.settled:
            out.append(f"  stuck: state {result.state_found}")
        for note in result.notes:
            out.append(f"  note: {note}")
        if result.last_error:
            out.append(f"  conductor.last_error: {result.last_error}")
        out.append("  log:")
        out.extend(f"    {line}" for line in result.log_lines)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=None, help="how many turns (default 200; --quick 30)")
    parser.add_argument("--quick", action="store_true", help="30 turns and offline windows of 2-6 s")
    parser.add_argument("--seed", type=int, default=1, help="the plan's seed (default 1)")
    parser.add_argument("--verbose", action="store_true", help="every turn and every log line on stderr")
    parser.add_argument("--only", action="append", default=[], metavar="KIND:PHASE",
                        help="inject only these faults (repeatable), e.g. offline:asked; for reproductions. "
                             f"Known: {', '.join(f'{k}:{p}' for k, p in FAULT_MENU)}")
    parser.add_argument("--offline-s", type=float, default=None, metavar="S",
                        help="every offline window lasts S seconds (default: 3-15, --quick 2-6)")
    args = parser.parse_args(argv)
    turns = args.turns if args.turns is not None else (30 if args.quick else 200)
    if turns < 1:
        parser.error("--turns must be at least 1")
    menu = tuple(tuple(item.split(":", 1)) for item in args.only) or FAULT_MENU
    unknown = [":".join(item) for item in menu if item not in FAULT_MENU]
    if unknown:
        parser.error(f"unknown fault {', '.join(unknown)}; known: {', '.join(f'{k}:{p}' for k, p in FAULT_MENU)}")
    if args.offline_s is not None and not 0.5 <= args.offline_s <= 60:
        parser.error("--offline-s must be from 0.5 to 60 seconds")
    run = asyncio.run(soak(args.seed, turns, args.quick, args.verbose, menu, args.offline_s))  # type: ignore[arg-type]
    table, passed = render(run)
    print(table)
    findings = render_findings(run)
    if findings:
        print(findings)
    sys.stdout.flush()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
