#!/usr/bin/env python3
"""What the always-on daemon costs next to the least client that does the job, measured in one run.

Why one run: CPU figures on a shared 2-core machine drift by tens of percent between runs, so the
daemon and the yardstick (scripts/reference_client.py) alternate inside one run (rep 1 reference
then daemon, rep 2 the other way round, ...) and the table gives medians and ratios. Each client
run gets a fresh private PulseAudio rig (tests/rigs.py) and talks to the Live API emulator served
in this process over 127.0.0.1 (so the emulator's CPU is ours, not the client's).

Per client run: spawn -> ready (session up, microphone open: wall time and the child's CPU), a
short settle, an idle phase (nobody talks), N hold-to-talk turns and one barge-in. The speaker
sink's monitor is recorded here with its arrival times, so "the reply sounded" and "silent after
the press" are what reached the speaker, not what the client says. CPU is utime+stime of every
thread (/proc/PID/stat), peak RSS is VmHWM. A second table times `appliance ctl status` against a
running daemon and `appliance SUB --help` for every subcommand, next to `python -c pass`. A third
(scripts/bench_imports.py) splits start-up RSS and CPU by group of imports: the reference's, numpy,
the other dependencies, the appliance's own modules; a fourth, what PortAudio's device scan adds
with this machine's ALSA plugins and with a sound server's plugin only.

Usage: scripts/bench.py [--quick] [--reps R] [--idle-s S] [--turns N] [--verbose]
Exit 0 when the run completed (goals met or not), 1 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import inspect
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bench_imports  # noqa: E402  (scripts/, next to this file)
from appliance.audio.speech import utterance  # noqa: E402
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario  # noqa: E402
from rigs import ALSA_CONF, PulseRig, pulse_available  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
ENTRY = ROOT / ".venv" / "bin" / "appliance"
REFERENCE = ROOT / "scripts" / "reference_client.py"
KEY = "bench-key-not-a-secret"
TONE_S = 2.0  # every reply is a 440 Hz tone this long
TONE_HZ = 440.0
PACE = 1.7  # the emulator sends replies this much faster than real time
READY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
SETTLE_S = 2.0  # after ready: the rig's capture stream starts delivering a little late
GAP_S = 0.5  # between a reply and the next press
RELEASE_AFTER_S = 0.3  # the user lets go this long after the last word
BARGE_AFTER_S = 0.6  # into a playing reply, the barge-in press
WHOLE_FRACTION = 0.9
QUESTIONS = (
    "What can I make with eggs, spinach and a bit of cheese?",
    "How long do I boil an egg for a soft yolk?",
    "Set a timer for twelve minutes please.",
    "What is a good substitute for buttermilk?",
    "How hot should the oven be for bread?",
)
SUBCOMMANDS = ("demo", "ask", "run", "ctl", "doctor", "devices", "audio-test", "emulator")
#: what a command that only parses arguments or talks to the control socket should not need to import
HEAVY_MODULES = ("asyncio", "numpy", "websockets", "pyaudio", "appliance.emulator.server", "appliance.commands.doctor")


class BenchError(Exception):
    """One line saying why a client run (or the whole benchmark) could not go on."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread: its name and CPU seconds so far (for --verbose: where the idle time goes)."""
    found: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


# ----------------------------------------------------------------------------------------- the speaker


class SpeakerMonitor:
    """Records the speaker sink's monitor with arrival times and finds the reply tone in it.

    A silent stream of our own keeps the sink busy, so the monitor delivers without gaps whether or
    not the client keeps its output open. A sample's time is taken from the earliest-arriving chunk
    near it (the least-delayed one), so the figures include the monitor's own ~10 ms, for both clients.
    """

    RATE = 24000
    WINDOW = RATE * 40 // 1000  # 40 ms: keeps the earcons' nearest partial (523 Hz) out of the 440 Hz bin
    HOP = RATE * 5 // 1000
    FLOOR = 0.01 * 32768  # a 440 Hz component below -40 dBFS is not the reply

    def __init__(self, env: dict[str, str]) -> None:
        self._env = {**os.environ, **env}
        self._lock = threading.Lock()
        self._pcm = bytearray()
        self._arrivals: list[tuple[float, int]] = []  # (time, samples received so far)
        self._procs: list[subprocess.Popen[bytes]] = []
        window = np.hanning(self.WINDOW)
        n = np.arange(self.WINDOW)
        self._kernel = window * np.exp(-2j * np.pi * TONE_HZ * n / self.RATE) / (window.sum() / 2)

    def start(self) -> None:
        fmt = ["--rate", str(self.RATE), "--channels", "1", "--format", "s16le", "--raw"]
        keep_busy = subprocess.Popen(["pacat", "--playback", "-d", "speaker", *fmt], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self._env)
        recorder = subprocess.Popen(["pacat", "--record", "-d", "speaker.monitor", "--latency-msec=10", *fmt],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self._env)
        self._procs += [keep_busy, recorder]
        threading.Thread(target=self._feed_silence, args=(keep_busy,), daemon=True, name="speaker-busy").start()
        threading.Thread(target=self._read, args=(recorder,), daemon=True, name="speaker-monitor").start()

    def _feed_silence(self, proc: subprocess.Popen[bytes]) -> None:
        chunk = bytes(self.RATE // 10 * 2)
        try:
            while proc.poll() is None:
                proc.stdin.write(chunk)  # blocks: pacat is paced by the sink
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        fd = proc.stdout.fileno()
        while data := os.read(fd, 65536):
            now = time.monotonic()
            with self._lock:
                self._pcm += data
                self._arrivals.append((now, len(self._pcm) // 2))

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def _origin(self, start: float, end: float) -> float:
        """The time of sample 0, from the least-delayed chunk near [start, end]."""
        with self._lock:
            arrivals = list(self._arrivals)
        if not arrivals:
            raise BenchError("the speaker monitor recorded nothing")
        near = [t - n / self.RATE for t, n in arrivals if start - 2 <= t <= end + 2]
        return min(near or [t - n / self.RATE for t, n in arrivals])

    def tone(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """(window centre times, 440 Hz amplitude) over [start, end], every 5 ms."""
        origin = self._origin(start, end)
        first = max(0, int((start - origin) * self.RATE))
        with self._lock:
            last = min(len(self._pcm) // 2, int((end - origin) * self.RATE))
            raw = bytes(self._pcm[2 * first:2 * last]) if last > first else b""
        x = np.frombuffer(raw, "<i2").astype(np.float64)
        if len(x) < self.WINDOW:
            return np.zeros(0), np.zeros(0)
        frames = np.lib.stride_tricks.sliding_window_view(x, self.WINDOW)[::self.HOP]
        amps = np.abs(frames @ self._kernel)
        times = origin + (first + np.arange(len(amps)) * self.HOP + self.WINDOW / 2) / self.RATE
        return times, amps

    def sounded_s(self, start: float, end: float) -> float:
        """How long the reply tone sounded in [start, end] (at half its level or more)."""
        _, amps = self.tone(start, end)
        loud = amps[amps >= self.FLOOR]
        if not len(loud):
            return 0.0
        return float(np.count_nonzero(amps >= np.median(loud) / 2)) * self.HOP / self.RATE

    def silent_after(self, press: float, end: float) -> float | None:
        """Seconds from `press` until the tone fell below half its level; None if it was not playing."""
        times, amps = self.tone(press - 0.3, end)
        before = amps[times < press]
        if not len(before) or np.median(before) < self.FLOOR:
            return None
        half = np.median(before) / 2
        quiet = np.nonzero((times >= press) & (amps < half))[0]
        return float(times[quiet[0]] - press) if len(quiet) else None


# --------------------------------------------------------------------------------------------- the rig


def start_rig(root: Path, lean_alsa: bool = False) -> PulseRig:
    """A private PulseAudio rig; `lean_alsa` leaves the system's ALSA plugins (conf.d) out of both clients."""
    rig = PulseRig(root, alsa_conf=bench_imports.lean_alsa_top(root) if lean_alsa else ALSA_CONF)
    rig.start()
    return rig


def _pactl(rig: PulseRig, *args: str) -> str:
    done = subprocess.run(["pactl", *args], env={**os.environ, **rig.env()}, capture_output=True, text=True,
                          timeout=10)
    return done.stdout if done.returncode == 0 else ""


def mic_open(rig: PulseRig) -> bool:
    """Someone records from the mic sink's monitor (the bench's own recorder is on the speaker's)."""
    sources = [line.split("\t") for line in _pactl(rig, "list", "short", "sources").splitlines()]
    mic = next((f[0] for f in sources if len(f) > 1 and f[1] == "mic.monitor"), None)
    outputs = [line.split("\t") for line in _pactl(rig, "list", "short", "source-outputs").splitlines()]
    return mic is not None and any(len(f) > 1 and f[1] == mic for f in outputs)


def child_env(rig: PulseRig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    env.update(rig.env())
    env.update({"GEMINI_API_KEY": KEY, "GPIOZERO_PIN_FACTORY": "mock"})
    return env


# ------------------------------------------------------------------------------------------ the clients


@dataclass
class Event:
    time: float
    word: str


class Child:
    """A client process and the events it reports, which waiters can block on with a timeout."""

    name = "child"

    def __init__(self, work: Path, rig: PulseRig, url: str) -> None:
        self.work, self.rig, self.url = work, rig, url
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        self.spawned_at = 0.0
        self.claimed_cpu: float | None = None  # CPU at the moment the client said it was ready
        self.stderr_path = work / f"{self.name}.stderr"
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error = ""  # the child's own last `error ...` event, if it reports them

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def note(self, word: str, at: float | None = None) -> None:
        self.events.append(Event(time.monotonic() if at is None else at, word))
        self.changed.set()

    async def _watch_exit(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        self.changed.set()

    async def wait_until(self, found: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = found()
            if value is not None:
                return value
            if self.proc is not None and self.proc.returncode is not None:
                raise BenchError(f"{self.name} exited with code {self.proc.returncode} before {what}"
                                 f"{self.last_words()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {what} within {timeout:g} s{self.last_words()}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    def first(self, words: Sequence[str], after: float) -> Event | None:
        return next((e for e in self.events if e.time >= after and e.word in words), None)

    def last_words(self) -> str:
        if self.last_error:
            return f" ({self.last_error[:160]})"
        try:
            lines = [ln for ln in self.stderr_path.read_text(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith(("ALSA lib", "Cannot connect", "jack", "Jack"))]
        except OSError:
            return ""
        return f" ({lines[-1].strip()[:160]})" if lines else ""

    async def spawn(self, argv: list[str], env: dict[str, str], stdin: Any) -> None:
        self.spawned_at = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=stdin, stdout=asyncio.subprocess.PIPE if stdin else err, stderr=err, env=env)
        self._tasks.append(asyncio.ensure_future(self._watch_exit()))

    async def finish(self, ask: Callable[[], Any]) -> int | None:
        """Ask the child to stop, wait a bounded time, then kill it."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        try:
            await ask()
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except (TimeoutError, OSError, BrokenPipeError, ConnectionError):
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        return self.proc.returncode


async def ctl_request(path: Path, cmd: str, timeout: float = 10.0) -> dict[str, Any]:
    """One control-socket request, whether appliance.ipc.client.request is async or plain."""
    from appliance.ipc import client

    call = client.request
    if inspect.iscoroutinefunction(call):
        pending = call(path, cmd)
    else:
        pending = asyncio.to_thread(call, path, cmd)
    try:
        reply = await asyncio.wait_for(pending, timeout)
    except Exception as exc:  # ControlError, DaemonNotRunning, a timeout: one line is all we report
        raise BenchError(f"daemon: {cmd!r} failed: {exc or type(exc).__name__}") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise BenchError(f"daemon: {cmd!r} refused: {reply}")
    return reply


class DaemonChild(Child):
    """`python -m appliance run`, driven over its control socket; its states arrive as sd_notify STATUS lines."""

    name = "daemon"

    def __init__(self, work: Path, rig: PulseRig, url: str) -> None:
        super().__init__(work, rig, url)
        self.control = work / "ctl.sock"
        self._notify_path = work / "notify.sock"
        self._notify: socket.socket | None = None

    async def start(self) -> None:
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self._notify.setblocking(False)
        asyncio.get_running_loop().add_reader(self._notify.fileno(), self._on_notify)
        env = child_env(self.rig)
        # as under systemd (WatchdogSec=30 in the unit): the same pings, the same status lines
        env.update({"NOTIFY_SOCKET": str(self._notify_path), "WATCHDOG_USEC": "30000000",
                    "PYTHONUNBUFFERED": "1"})
        argv = [str(PYTHON), "-m", "appliance", "--set", f"live.endpoint={self.url}",
                "--set", "audio.input_device=pulse", "--set", "audio.output_device=pulse",
                "--set", f"control.socket={self.control}", "--set", f"state.dir={self.work / 'state'}", "run"]
        await self.spawn(argv, env, stdin=None)

    def _on_notify(self) -> None:
        assert self._notify is not None
        while True:
            try:
                data = self._notify.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            now = time.monotonic()
            for line in data.decode(errors="replace").splitlines():
                if line.startswith("STATUS="):
                    state = line[len("STATUS="):].split(":")[0].strip()
                    if state == "idle" and self.claimed_cpu is None and self.proc is not None:
                        self.claimed_cpu = cpu_seconds(self.pid)
                    self.note(state, now)

    async def claimed_ready(self) -> float:
        idle = await self.wait_until(lambda: self.first(["idle"], 0.0), READY_TIMEOUT_S, "idle state")
        ready_at, deadline = idle.time, self.spawned_at + READY_TIMEOUT_S
        while True:
            status = await ctl_request(self.control, "status")
            if status.get("state") == "idle" and status.get("connection") == "ready":
                return ready_at
            if time.monotonic() > deadline:
                raise BenchError(f"daemon: not idle with the connection ready within {READY_TIMEOUT_S:g} s "
                                 f"(state {status.get('state')}, connection {status.get('connection')})")
            await asyncio.sleep(0.1)  # polling a status that has no event of its own
            ready_at, self.claimed_cpu = time.monotonic(), cpu_seconds(self.pid)

    async def press(self) -> None:
        await ctl_request(self.control, "press")

    async def release(self) -> None:
        await ctl_request(self.control, "release")

    async def wait_playing(self, after: float) -> float:
        event = await self.wait_until(lambda: self.first(["speaking"], after), REPLY_TIMEOUT_S, "reply")
        return event.time

    async def wait_reply_done(self, after: float) -> float:
        def done() -> Event | None:
            busy = self.first(["thinking", "speaking"], after)
            return None if busy is None else self.first(["idle"], busy.time)
        return (await self.wait_until(done, REPLY_TIMEOUT_S, "end of the reply")).time

    async def stop(self) -> int | None:
        async def term() -> None:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.finish(term)
        finally:
            if self._notify is not None:
                asyncio.get_running_loop().remove_reader(self._notify.fileno())
                self._notify.close()


class ReferenceChild(Child):
    """scripts/reference_client.py, driven by lines on its stdin; its events come on stdout."""

    name = "reference"

    async def start(self) -> None:
        argv = [str(PYTHON), str(REFERENCE), "--endpoint", self.url, "--input-device", "pulse",
                "--output-device", "pulse"]
        await self.spawn(argv, child_env(self.rig), stdin=asyncio.subprocess.PIPE)
        self._tasks.append(asyncio.ensure_future(self._read_events()))

    async def _read_events(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            words = line.decode(errors="replace").split()
            if not words:
                continue
            if words[0] == "ready" and self.claimed_cpu is None:
                self.claimed_cpu = cpu_seconds(self.pid)
            try:
                at = float(words[-1])
            except ValueError:
                at = time.monotonic()
            self.note(words[0], at)
            if words[0] == "error":
                self.last_error = " ".join(words[:-1])

    async def _say(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())
        await asyncio.wait_for(self.proc.stdin.drain(), 5)

    async def claimed_ready(self) -> float:
        return (await self.wait_until(lambda: self.first(["ready"], 0.0), READY_TIMEOUT_S, "ready")).time

    async def press(self) -> None:
        await self._say("press")

    async def release(self) -> None:
        await self._say("release")

    async def wait_playing(self, after: float) -> float:
        return (await self.wait_until(lambda: self.first(["reply-start"], after), REPLY_TIMEOUT_S, "reply")).time

    async def wait_reply_done(self, after: float) -> float:
        event = await self.wait_until(lambda: self.first(["reply-done"], after), REPLY_TIMEOUT_S, "end of the reply")
        return event.time

    async def stop(self) -> int | None:
        return await self.finish(lambda: self._say("quit"))


# -------------------------------------------------------------------------------------------- one run


@dataclass
class Speech:
    pcm: bytes
    seconds: float
    lead_in_s: float  # silence before the first word
    active_frames: int


def active_frames(pcm: bytes, rate: int = 16000) -> int:
    """20 ms frames louder than a tenth of the loudest one: how much of the utterance is voice."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    n = rate // 50
    if len(x) < n:
        return 0
    rms = np.sqrt((x[: len(x) // n * n].reshape(-1, n) ** 2).mean(axis=1))
    return int(np.count_nonzero(rms >= 0.1 * rms.max())) if rms.max() > 0 else 0


def make_speech(text: str) -> Speech:
    pcm, _ = utterance(text, 16000)
    x = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.nonzero(x >= 0.05 * max(1, int(x.max())))[0]
    lead = float(loud[0]) / 16000 if len(loud) else 0.0
    return Speech(pcm, len(pcm) / 32000, lead, active_frames(pcm))


@dataclass
class RunResult:
    client: str
    rep: int
    ready_s: float = 0.0
    ready_cpu_s: float = 0.0
    idle_cpu_per_min: float = 0.0
    conv_cpu_per_min: float = 0.0
    rss_mb: float = 0.0
    barge_ms: float | None = None
    barge_note: str = ""
    replies_whole: int = 0
    replies: int = 0
    utterances_whole: int = 0
    utterances: int = 0
    onset_ms: list[float] = field(default_factory=list)
    idle_threads: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


class Turns:
    """Hold-to-talk turns against one client, with what the speaker and the emulator saw."""

    def __init__(self, child: Child, rig: PulseRig, monitor: SpeakerMonitor, emu: Emulator,
                 result: RunResult, verbose: bool) -> None:
        self.child, self.rig, self.monitor, self.emu = child, rig, monitor, emu
        self.result, self.verbose = result, verbose

    def _connections(self) -> set[int]:
        """This client's connections (a reconnect mid-run opens another); loop.time() is time.monotonic()."""
        return {c.id for c in self.emu.connections if c.opened_at >= self.child.spawned_at}

    async def speak(self, speech: Speech) -> float:
        """Play the utterance into the mic at once (the user talks as they press); returns the onset time."""
        started = time.monotonic()
        player = self.rig.play_into_mic(speech.pcm, 16000)
        try:
            await asyncio.to_thread(player.wait, speech.seconds + 10)
        except subprocess.TimeoutExpired:
            player.kill()
            raise BenchError("the rig's microphone player hung") from None
        return started + speech.lead_in_s

    async def ask(self, speech: Speech) -> tuple[float, float]:
        """Press, speak, release shortly after; returns (press time, release time)."""
        pressed = time.monotonic()
        await self.child.press()
        onset = await self.speak(speech)
        await asyncio.sleep(RELEASE_AFTER_S)
        released = time.monotonic()
        await self.child.release()
        self._onset_to_activity(pressed, onset)
        return pressed, released

    def _onset_to_activity(self, pressed: float, onset: float) -> None:
        mine = self._connections()
        start = next((r for r in self.emu.received if r.conn_id in mine and r.time >= pressed - 0.05
                      and r.kind == "realtimeInput" and "activityStart" in (r.message or {}).get("realtimeInput", {})),
                     None)
        if start is not None:
            self.result.onset_ms.append((start.time - onset) * 1000)

    def _utterance_whole(self, speech: Speech) -> None:
        mine = self._connections()
        turns = [t for t in self.emu.turns if t.conn_id in mine and t.source == "audio"]
        self.result.utterances += 1
        heard = active_frames(turns[-1].user_pcm) if turns else 0
        if heard >= WHOLE_FRACTION * speech.active_frames:
            self.result.utterances_whole += 1
        elif self.verbose:
            log(f"    utterance cut: {heard} of {speech.active_frames} voiced 20 ms frames reached the service")

    def _reply_whole(self, released: float, done: float) -> float:
        sounded = self.monitor.sounded_s(released, done + 0.4)
        self.result.replies += 1
        if sounded >= WHOLE_FRACTION * TONE_S:
            self.result.replies_whole += 1
        return sounded

    async def turn(self, speech: Speech) -> None:
        pressed, released = await self.ask(speech)
        done = await self.child.wait_reply_done(released)
        self._utterance_whole(speech)
        sounded = self._reply_whole(released, done)
        if self.verbose:
            log(f"    turn: release -> reply done {done - released:.2f} s, tone sounded {sounded:.2f} s, "
                f"onset -> activityStart {self.result.onset_ms[-1] if self.result.onset_ms else float('nan'):.0f} ms")
        await asyncio.sleep(GAP_S)

    async def barge_in(self, first: Speech, second: Speech) -> None:
        _, released = await self.ask(first)
        await self.child.wait_playing(released)
        await asyncio.sleep(BARGE_AFTER_S)
        pressed = time.monotonic()
        await self.child.press()
        onset = await self.speak(second)
        await asyncio.sleep(RELEASE_AFTER_S)
        released2 = time.monotonic()
        await self.child.release()
        self._onset_to_activity(pressed, onset)
        done = await self.child.wait_reply_done(released2)
        self._utterance_whole(second)
        silent = self.monitor.silent_after(pressed, released2)
        if silent is None:
            self.result.barge_note = "the reply was not playing at the press, or never stopped"
        else:
            self.result.barge_ms = silent * 1000
            leaked = self.monitor.sounded_s(pressed + silent + 0.05, released2)
            if leaked > 0.05:
                self.result.barge_note = f"the cut reply came back for {leaked:.2f} s"
        sounded = self._reply_whole(released2, done)
        if self.verbose:
            log(f"    barge-in: press -> silent {self.result.barge_ms or float('nan'):.0f} ms "
                f"{self.result.barge_note}; new reply sounded {sounded:.2f} s")


async def measure_phase(pid: int, work: Callable[[], Any]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `pid` while `work` runs."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await work()
    return cpu_seconds(pid) - cpu0, time.monotonic() - t0


async def wait_ready(child: Child) -> tuple[float, float]:
    """(start -> ready seconds, CPU at ready): the client says so and the rig shows its microphone open."""
    claimed = await child.claimed_ready()
    cpu = child.claimed_cpu if child.claimed_cpu is not None else cpu_seconds(child.pid)
    ready_at = claimed
    deadline = child.spawned_at + READY_TIMEOUT_S
    while not await asyncio.to_thread(mic_open, child.rig):
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name}: the microphone was not open within {READY_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)  # polling PulseAudio, which has no event for this here
        ready_at, cpu = time.monotonic(), cpu_seconds(child.pid)
    return ready_at - child.spawned_at, cpu


async def run_client(kind: str, rep: int, emu: Emulator, speeches: list[Speech], opts: argparse.Namespace,
                     root: Path) -> RunResult:
    """One client on a fresh rig: ready, idle, turns, barge-in; always stops the child and the rig."""
    result = RunResult(kind, rep)
    work = root / f"rep{rep}-{kind}"
    work.mkdir(parents=True)
    rig = await asyncio.to_thread(start_rig, work, opts.lean_alsa)
    monitor = SpeakerMonitor(rig.env())
    child: Child = (DaemonChild if kind == "daemon" else ReferenceChild)(work, rig, emu.url)
    try:
        monitor.start()
        await child.start()
        await client_phases(child, rig, monitor, emu, speeches, opts, result)
    except BenchError as exc:
        result.error = str(exc)
    finally:
        try:
            if child.proc is not None and child.proc.returncode is None and not result.rss_mb:
                result.rss_mb = peak_rss_mb(child.pid)
            code = await child.stop()
            if code not in (0, None) and result.error is None:
                log(f"  {kind} rep {rep} exited with code {code} when asked to stop{child.last_words()}")
        finally:
            await asyncio.to_thread(monitor.stop)
            await asyncio.to_thread(rig.stop)
    return result


async def client_phases(child: Child, rig: PulseRig, monitor: SpeakerMonitor, emu: Emulator,
                        speeches: list[Speech], opts: argparse.Namespace, result: RunResult) -> None:
    result.ready_s, result.ready_cpu_s = await wait_ready(child)
    await asyncio.sleep(SETTLE_S)
    before = thread_cpu(child.pid)
    cpu, wall = await measure_phase(child.pid, lambda: asyncio.sleep(opts.idle_s))
    result.idle_cpu_per_min = cpu * 60 / wall
    after = thread_cpu(child.pid)
    result.idle_threads = sorted(((name, spent - before.get(tid, (name, 0.0))[1])
                                  for tid, (name, spent) in after.items()), key=lambda t: -t[1])
    turns = Turns(child, rig, monitor, emu, result, opts.verbose)

    async def conversation() -> None:
        for i in range(opts.turns):
            await turns.turn(speeches[i % len(speeches)])
        await turns.barge_in(speeches[0], speeches[1])

    cpu, wall = await measure_phase(child.pid, conversation)
    result.conv_cpu_per_min = cpu * 60 / wall
    result.rss_mb = peak_rss_mb(child.pid)


# -------------------------------------------------------------------------------------- command costs


@dataclass
class CommandCost:
    label: str
    wall_ms: float
    modules: int | None = None
    heavy: list[str] = field(default_factory=list)


def plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}


def appliance_argv() -> list[str]:
    return [str(ENTRY)] if ENTRY.exists() else [str(PYTHON), "-m", "appliance"]


def timed_run(argv: list[str], limit_s: float = 60.0) -> tuple[float, int]:
    """(wall seconds, exit code). Popen.wait(timeout) polls with sleeps of up to 50 ms, which would
    round every figure up; a blocking wait with a kill timer measures to the microsecond instead."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=plain_env())
    killer = threading.Timer(limit_s, proc.kill)
    killer.start()
    try:
        code = proc.wait()
    finally:
        killer.cancel()
    return time.monotonic() - started, code


def wall_ms(commands: list[list[str]], times: int) -> list[float]:
    """Median wall time of each command, in ms. The commands take turns, round after round, so a
    burst of load from elsewhere on the machine falls on all of them rather than on one."""
    spent: list[list[float]] = [[] for _ in commands]
    for _ in range(times):
        for argv, mine in zip(commands, spent):
            seconds, code = timed_run(argv)
            if code != 0:
                raise BenchError(f"{' '.join(argv[-3:])} exited with code {code}")
            mine.append(seconds * 1000)
    return [statistics.median(mine) for mine in spent]


def imported(argv: list[str]) -> tuple[int, list[str]]:
    """How many modules `argv` (a Python script and its arguments) imports, and which heavy ones."""
    done = subprocess.run([str(PYTHON), "-X", "importtime", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=plain_env(), timeout=60)
    names = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:") and "imported package" not in line]
    heavy = [h for h in HEAVY_MODULES if any(n == h or n.startswith(h + ".") for n in names)]
    return len(names), heavy


def script_args(argv: list[str]) -> list[str]:
    """`argv` without the interpreter, for `python -X importtime`."""
    return argv[1:] if argv[0] == str(PYTHON) else argv


def command_costs(control: Path, times: int) -> list[CommandCost]:
    """`python -c pass`, `ctl status` against the running daemon, and every subcommand's --help.

    `ctl status` reads a config file that names the socket, as the one install.sh writes does
    (so the TOML parse an installed box pays is in the figure).
    """
    base = appliance_argv()
    config = control.parent / "installed-config.toml"
    config.write_text(f'[live]\nvoice = "Kore"\n\n[control]\nsocket = "{control}"  # set by install.sh\n')
    commands = {"python -c pass": [str(PYTHON), "-c", "pass"],
                "appliance ctl status": [*base, "--config", str(config), "ctl", "status"]}
    commands.update({f"appliance {sub} --help": [*base, sub, "--help"] for sub in SUBCOMMANDS})
    walls = wall_ms(list(commands.values()), times)
    costs = []
    for (label, argv), wall in zip(commands.items(), walls):
        count, heavy = imported(script_args(argv)) if label != "python -c pass" else (None, [])
        costs.append(CommandCost(label, wall, count, heavy))
    return costs


async def measure_commands(emu: Emulator, root: Path, times: int) -> list[CommandCost]:
    """A daemon of its own on a fresh rig, so `ctl status` has someone to answer it."""
    work = root / "commands"
    work.mkdir()
    rig = await asyncio.to_thread(start_rig, work)
    child = DaemonChild(work, rig, emu.url)
    try:
        await child.start()
        await wait_ready(child)
        return await asyncio.to_thread(command_costs, child.control, times)
    finally:
        try:
            await child.stop()
        finally:
            await asyncio.to_thread(rig.stop)


# ---------------------------------------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores (nproc), {model}"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def cpu_cell(per_min: float | None) -> str:
    return "—" if per_min is None else f"{per_min:.2f} s/min ({per_min / 60 * 100:.1f} % of a core)"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratio_cell(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def met_cell(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "no")


@dataclass
class Row:
    figure: str
    daemon: str
    reference: str
    ratio: str
    goal: str
    met: bool | None


def figure_rows(runs: dict[str, list[RunResult]]) -> list[Row]:
    good = {k: [r for r in v if r.error is None] for k, v in runs.items()}

    def med(kind: str, pick: Callable[[RunResult], float | None]) -> float | None:
        return median([v for v in (pick(r) for r in good[kind]) if v is not None])

    rows = []
    for figure, pick, limit in (("CPU per idle minute (mic open, session warm)", lambda r: r.idle_cpu_per_min, 1.2),
                                ("CPU per conversation minute", lambda r: r.conv_cpu_per_min, 1.3)):
        d, f = med("daemon", pick), med("reference", pick)
        r = ratio(d, f)
        rows.append(Row(figure, cpu_cell(d), cpu_cell(f), ratio_cell(r), f"≤ {limit}× reference",
                        None if r is None else r <= limit))
    d, f = med("daemon", lambda r: r.ready_cpu_s), med("reference", lambda r: r.ready_cpu_s)
    rows.append(Row("CPU to get ready", secs(d), secs(f), ratio_cell(ratio(d, f)), "≤ 1.2× reference",
                    None if ratio(d, f) is None else ratio(d, f) <= 1.2))
    d, f = med("daemon", lambda r: r.ready_s), med("reference", lambda r: r.ready_s)
    rows.append(Row("start → ready (session up, mic open)", secs(d), secs(f), ratio_cell(ratio(d, f)), "", None))
    d, f = med("daemon", lambda r: r.rss_mb), med("reference", lambda r: r.rss_mb)
    rows.append(Row("peak RSS (VmHWM)", mb(d), mb(f), ratio_cell(ratio(d, f)), "≤ 55 MB",
                    None if d is None else d <= 55))
    d, f = med("daemon", lambda r: r.barge_ms), med("reference", lambda r: r.barge_ms)
    rows.append(Row("barge-in: press → speaker silent", ms(d) + notes(good["daemon"]),
                    ms(f) + notes(good["reference"]), ratio_cell(ratio(d, f)), "≤ 60 ms",
                    None if d is None else d <= 60))
    rows.append(count_row("replies whole (tone ≥ 90 % heard)", good, "replies_whole", "replies"))
    rows.append(count_row("utterances whole (first syllable kept)", good, "utterances_whole", "utterances"))
    d_on = [v for r in good["daemon"] for v in r.onset_ms]
    f_on = [v for r in good["reference"] for v in r.onset_ms]
    rows.append(Row("speech onset → activityStart at the service (median / worst)", onset_cell(d_on),
                    onset_cell(f_on), "—", "≤ 200 ms", max(d_on) <= 200 if d_on else None))
    return rows


def count_row(figure: str, good: dict[str, list[RunResult]], whole: str, total: str) -> Row:
    def cell(kind: str) -> tuple[str, bool | None]:
        w = sum(getattr(r, whole) for r in good[kind])
        n = sum(getattr(r, total) for r in good[kind])
        return (f"{w}/{n}", w == n) if n else ("—", None)

    d, ok = cell("daemon")
    f, _ = cell("reference")
    return Row(figure, d, f, "—", "all", ok)


def notes(runs: list[RunResult]) -> str:
    found = sorted({r.barge_note for r in runs if r.barge_note})
    return f" ({'; '.join(found)})" if found else ""


def onset_cell(values: list[float]) -> str:
    return "—" if not values else f"{statistics.median(values):.0f} / {max(values):.0f} ms"


def secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def mb(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} MB"


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def figure_table(rows: list[Row]) -> str:
    lines = ["| figure | daemon | reference | ratio (daemon/reference) | goal | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.daemon} | {r.reference} | {r.ratio} | {r.goal} | {met_cell(r.met)} |"
              for r in rows]
    return "\n".join(lines)


def command_rows(costs: list[CommandCost]) -> tuple[str, bool | None]:
    """The command table, and whether `ctl status` met ≤ 2× `python -c pass`."""
    floor = costs[0].wall_ms
    lines = ["| command | wall time (median) | × `python -c pass` | modules imported | heavy imports | goal | met |",
             "|---|---|---|---|---|---|---|"]
    status_ok: bool | None = None
    for cost in costs:
        times = cost.wall_ms / floor if floor else None
        goal, ok = "", None
        if cost.label == "appliance ctl status" and times is not None:
            goal, ok = "≤ 2×", times <= 2
            status_ok = ok
        modules = "—" if cost.modules is None else str(cost.modules)
        heavy = ", ".join(cost.heavy) if cost.heavy else ("none" if cost.modules is not None else "—")
        lines.append(f"| `{cost.label}` | {cost.wall_ms:.0f} ms | {ratio_cell(times)} | {modules} | {heavy} | "
                     f"{goal} | {met_cell(ok)} |")
    return "\n".join(lines), status_ok


def report(runs: dict[str, list[RunResult]], costs: list[CommandCost] | None, opts: argparse.Namespace,
           wall_s: float) -> None:
    print(f"appliance bench: {opts.reps} rep(s) (alternating), idle {opts.idle_s:g} s, {opts.turns} turns + "
          f"1 barge-in per client run, {TONE_S:g} s replies at pace {PACE}; {machine()}; medians"
          + ("; without the system's ALSA plugins (--lean-alsa)" if opts.lean_alsa else "") + "\n")
    rows = figure_rows(runs)
    print(figure_table(rows))
    unmet = [r.figure for r in rows if r.met is False]
    if costs:
        table, status_ok = command_rows(costs)
        print()
        print(table)
        if status_ok is False:
            unmet.append("appliance ctl status ≤ 2× python -c pass")
    print()
    print("Where start-up memory and CPU go (scripts/bench_imports.py: each row one more group of imports):")
    try:
        print(bench_imports.table(bench_imports.measure(3, PYTHON)))
        print()
        with tempfile.TemporaryDirectory() as scan_work:
            print(bench_imports.scan_table(bench_imports.measure_scan(Path(scan_work), 3, PYTHON)))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"import costs could not be measured: {exc}")
    failures = [f"{r.client} rep {r.rep}: {r.error}" for v in runs.values() for r in v if r.error]
    print()
    for line in failures:
        print(f"run failed: {line}")
    print(f"goals not met: {'; '.join(unmet)}" if unmet else "all goals met")
    print(f"bench wall time: {wall_s:.0f} s")


def verbose_run(result: RunResult) -> None:
    if result.error:
        log(f"  {result.client} rep {result.rep}: FAILED: {result.error}")
        return
    log(f"  {result.client} rep {result.rep}: ready {result.ready_s:.2f} s / {result.ready_cpu_s:.2f} s CPU, "
        f"idle {result.idle_cpu_per_min:.2f} s/min, conversation {result.conv_cpu_per_min:.2f} s/min, "
        f"RSS {result.rss_mb:.1f} MB, barge-in {result.barge_ms or float('nan'):.0f} ms")
    top = ", ".join(f"{name} {spent:.2f}" for name, spent in result.idle_threads[:6] if spent > 0)
    log(f"    idle CPU by thread (s over the idle phase): {top or 'none'}")


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 rep, 20 s idle, 2 turns (under 4 minutes)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--idle-s", type=float, help="idle phase in seconds (default 60, --quick 20)")
    parser.add_argument("--turns", type=int, help="hold-to-talk turns per client run (default 5, --quick 2)")
    parser.add_argument("--lean-alsa", action="store_true",
                        help="both clients without the system's ALSA plugins (/etc/alsa/conf.d), as on a Pi "
                             "without alsa-plugins; the rig's pulse devices stay")
    parser.add_argument("--verbose", action="store_true", help="per-run and per-turn figures on stderr")
    opts = parser.parse_args(argv)
    opts.reps = opts.reps or (1 if opts.quick else 3)
    opts.idle_s = opts.idle_s or (20.0 if opts.quick else 60.0)
    opts.turns = opts.turns if opts.turns is not None else (2 if opts.quick else 5)
    if opts.reps < 1 or opts.idle_s <= 0 or opts.turns < 0:
        parser.error("--reps must be at least 1, --idle-s above 0 and --turns not negative")
    return opts


def cannot_run() -> str | None:
    if not pulse_available():
        return "PulseAudio tools or the ALSA pulse plugin are missing"
    if not PYTHON.exists():
        return f"no interpreter at {PYTHON}"
    return None


async def bench(opts: argparse.Namespace, speeches: list[Speech]) -> tuple[dict[str, list[RunResult]],
                                                                             list[CommandCost] | None]:
    runs: dict[str, list[RunResult]] = {"daemon": [], "reference": []}
    costs: list[CommandCost] | None = None
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as tmp:
        root = Path(tmp)
        async with Emulator(EmulatorConfig(pace=PACE), Scenario(reply="tone", tone_seconds=TONE_S)) as emu:
            for rep in range(1, opts.reps + 1):
                order = ("reference", "daemon") if rep % 2 else ("daemon", "reference")
                for kind in order:
                    log(f"rep {rep}/{opts.reps}: {kind} ...")
                    result = await run_client(kind, rep, emu, speeches, opts, root)
                    runs[kind].append(result)
                    if opts.verbose or result.error:
                        verbose_run(result)
            log("command costs ...")
            try:
                costs = await measure_commands(emu, root, 5)
            except BenchError as exc:
                log(f"  command costs: {exc}")
    return runs, costs


def compile_like_an_install() -> None:
    """Byte-compile the package, as pip does when install.sh installs it on the Pi.

    A checkout run with PYTHONDONTWRITEBYTECODE (as CI and these machines set it) would otherwise
    compile every module from source at each start, a cost no installed appliance pays; the
    reference client's imports are installed packages that pip compiled already.
    """
    compileall.compile_dir(str(ROOT / "appliance"), quiet=1, workers=1)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    why = cannot_run()
    if why:
        print(f"bench could not run: {why}")
        return 1
    started = time.monotonic()
    compile_like_an_install()
    speeches = [make_speech(text) for text in QUESTIONS]
    try:
        runs, costs = asyncio.run(bench(opts, speeches))
    except (BenchError, OSError, RuntimeError) as exc:
        print(f"bench could not run: {' '.join(str(exc).split())}")
        return 1
    if not all(any(r.error is None for r in v) for v in runs.values()):
        report(runs, costs, opts, time.monotonic() - started)
        print("bench could not run: a client completed no run (see above)")
        return 1
    report(runs, costs, opts, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
