"""Sound-card stand-ins for tests: real PyAudio, real PortAudio, real alsa-lib.

`FileRig`: ALSA `file` PCMs over `null`. Capture reads a raw file we wrote, so what
reaches the application is bit-exact and known; it is not paced (a 3 s file is read
in milliseconds), so tests count frames instead of seconds, and must not read past
the end of the file (alsa-lib then repeats stale data).

`PulseRig`: a private PulseAudio server with two null sinks, `mic` and `speaker`.
It is paced in real time, so it is the rig for playback and for anything that
depends on time passing.  Speech is played into `mic` (the app captures
`mic.monitor`); what the app plays is recorded from `speaker.monitor`.

Both are selected with `ALSA_CONFIG_PATH`, which must be set before `PyAudio()` is
created; `env()` gives the variables for a subprocess and `activate(monkeypatch)`
sets them in this process.

`PulseRig(hotplug=True)` adds ALSA devices bound to one sink each (`rig-speaker`,
`rig-mic`) and `unplug(sink)`/`plug(sink)`, which take a sink away the way an
unplugged USB card goes: its module is unloaded and the streams on it die.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ALSA_CONF = "/usr/share/alsa/alsa.conf"


@dataclass
class FileRig:
    root: Path
    _pcms: list[str] = field(default_factory=list)

    def add_capture(
        self, name: str, samples: np.ndarray, *, rate: int = 48000, fmt: str = "S32_LE"
    ) -> Path:
        """A capture device `name` whose audio is `samples` (shape (n, channels), int16 or int32)."""
        if samples.ndim == 1:
            samples = samples[:, None]
        dtype = {"S16_LE": "<i2", "S32_LE": "<i4"}[fmt]
        raw = self.root / f"{name}.raw"
        raw.write_bytes(np.ascontiguousarray(samples).astype(dtype).tobytes())
        self._pcms.append(
            f'pcm.{name}_raw {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}\n'
            f'pcm.{name} {{ type plug; slave {{ pcm "{name}_raw"; format {fmt}; rate {rate}; channels {samples.shape[1]} }} }}\n'
        )
        return raw

    @property
    def config_path(self) -> Path:
        path = self.root / "asoundrc"
        path.write_text("".join(self._pcms))
        return path

    def env(self) -> dict[str, str]:
        return {"ALSA_CONFIG_PATH": f"{ALSA_CONF}:{self.config_path}"}

    def activate(self, monkeypatch) -> None:
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)


def pulse_available() -> bool:
    return all(shutil.which(tool) for tool in ("pulseaudio", "pacat", "parecord")) and Path(
        "/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so"
    ).exists() or any(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so"))


def _close_quietly(pipe) -> None:
    """Close our end of a child's stdin now, not at garbage collection: a flush into a
    child that is gone raises BrokenPipeError, and in a finaliser that becomes an
    unraisable exception that fails whichever test happens to be running."""
    if pipe is None:
        return
    try:
        pipe.close()
    except (BrokenPipeError, OSError):
        pass  # the child is gone; what it did not read no longer matters


def _write_all(fd: int, data: bytes) -> None:
    """All of `data` to a blocking pipe (a signal can cut a write short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: With hotplug=True: ALSA devices that reach only the speaker sink, and only the mic sink's monitor.
SPEAKER_PCM = "rig-speaker"
MIC_PCM = "rig-mic"


class PulseRig:
    """A private PulseAudio server; start() it, stop() it (also on failure)."""

    def __init__(self, root: Path, *, mic_rate: int = 48000, mic_channels: int = 2, mic_format: str = "s32le",
                 speaker_rate: int = 48000, speaker_channels: int = 2, speaker_heard_by_mic: bool = False,
                 hotplug: bool = False, alsa_conf: str = ALSA_CONF) -> None:
        self.root = root
        #: alsa-lib's top configuration; the bench may pass one without the system's conf.d plugins
        self._alsa_conf = alsa_conf
        self.runtime = root / "pulse-runtime"
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.socket = self.runtime / "native"
        self._mic = (mic_rate, mic_channels, mic_format)
        self._speaker = (speaker_rate, speaker_channels)
        #: route the speaker into the mic, like a speaker next to the microphone
        self._loopback = speaker_heard_by_mic
        self._server: subprocess.Popen | None = None
        self._feeder: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None
        self._recorder: subprocess.Popen | None = None
        #: sink-bound ALSA devices and the CLI socket that unplug() kills streams through
        self._hotplug = hotplug
        self._unplugged: set[str] = set()

    # -- environment
    def env(self) -> dict[str, str]:
        return {
            "ALSA_CONFIG_PATH": f"{self._alsa_conf}:{self._asoundrc()}",
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "HOME": str(self.root),
        }

    def activate(self, monkeypatch) -> None:
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)

    def _asoundrc(self) -> Path:
        path = self.root / "asoundrc-pulse"
        server = f"unix:{self.socket}"
        path.write_text(
            f'pcm.pulse {{ type pulse; server "{server}"; handle_underrun false }}\n'
            f'ctl.pulse {{ type pulse; server "{server}" }}\n'
            f'pcm.!default {{ type pulse; server "{server}"; handle_underrun false }}\n'
            f'ctl.!default {{ type pulse; server "{server}" }}\n'
            + (
                f'pcm.{SPEAKER_PCM} {{ type pulse; server "{server}"; device "speaker"; handle_underrun false }}\n'
                f'pcm.{MIC_PCM} {{ type pulse; server "{server}"; device "mic.monitor"; handle_underrun false }}\n'
                if self._hotplug
                else ""
            )
        )
        return path

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> None:
        mic_rate, mic_channels, mic_format = self._mic
        spk_rate, spk_channels = self._speaker
        script = self.root / "rig.pa"
        lines = [
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            f"load-module module-null-sink sink_name=mic rate={mic_rate} channels={mic_channels} format={mic_format}",
            f"load-module module-null-sink sink_name=speaker rate={spk_rate} channels={spk_channels} format=s16le",
            "set-default-sink speaker",
            "set-default-source mic.monitor",
        ]
        if self._loopback:
            lines.append("load-module module-loopback source=speaker.monitor sink=mic latency_msec=20")
        if self._hotplug:
            lines.append(f"load-module module-cli-protocol-unix socket={self._cli_socket}")
        script.write_text("\n".join(lines) + "\n")
        env = {**os.environ, **self.env()}
        self._server = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(script), "--exit-idle-time=-1", "--daemonize=no",
             "--disallow-exit", "--log-target=stderr", "--log-level=error", "--system=false"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ready(env):
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the private PulseAudio server did not start")
            time.sleep(0.05)  # polling a process we just started; nothing to wait on
        self._feed_silence_forever()

    def _feed_silence_forever(self) -> None:
        """A monitor source carries data only while its sink plays: keep the mic fed with room noise."""
        rate, channels, _ = self._mic
        # unbuffered: every byte is in the pipe or not written, none waits in a Python buffer
        self._feeder = subprocess.Popen(
            ["pacat", "--playback", "-d", "mic", "--rate", str(rate), "--channels", str(channels),
             "--format", "s16le", "--raw"],
            stdin=subprocess.PIPE, bufsize=0, env={**os.environ, **self.env()}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # a real microphone is never digitally silent: about -66 dBFS of room noise
        noise = np.random.default_rng(0).normal(0, 16, rate // 50 * channels)
        chunk = noise.astype("<i2").tobytes()
        feeder = self._feeder
        fd = feeder.stdin.fileno()

        def pump() -> None:
            try:
                while feeder.poll() is None:
                    _write_all(fd, chunk)  # blocks: pacat is paced by the sink
            except OSError:  # BrokenPipeError: pacat was stopped
                pass

        self._pump = threading.Thread(target=pump, daemon=True, name="mic-silence")
        self._pump.start()

    def _stop_feeder(self) -> None:
        """Kill the room noise and reap it; then its pipe is closed while nobody writes to it."""
        if self._feeder is None:
            return
        if self._feeder.poll() is None:
            self._feeder.kill()
        self._feeder.wait(timeout=5)
        if self._pump is not None:
            self._pump.join(timeout=5)  # its write fails at once: the reader is gone
            assert not self._pump.is_alive(), "the room-noise thread did not stop"
        _close_quietly(self._feeder.stdin)
        self._feeder = self._pump = None

    # -- hotplug (hotplug=True)
    @property
    def _cli_socket(self) -> Path:
        return self.runtime / "cli"

    def unplug(self, sink: str) -> None:
        """Take the `mic` or `speaker` sink away as an unplugged USB card goes.

        Every stream on the sink or its monitor is killed, then its module unloaded. (PulseAudio on its own
        would move those streams to the other sink, which no real card does; killed, the application's
        stream dies as on ALSA hardware.) The mic's room noise stops with it; plug() brings it back.
        """
        assert self._hotplug, "unplug() needs PulseRig(hotplug=True)"
        assert not self._loopback, "unplug() would kill the speaker-to-mic loopback for good"
        assert sink in ("mic", "speaker") and sink not in self._unplugged, sink
        sink_index = self._index_of("sinks", sink)
        monitor_index = self._index_of("sources", f"{sink}.monitor")
        kills = [f"kill-sink-input {i}" for i in self._streams_on("sink-inputs", sink_index)]
        kills += [f"kill-source-output {o}" for o in self._streams_on("source-outputs", monitor_index)]
        self._cli(kills)
        module = next(
            line.split("\t")[0] for line in self._pactl("list", "short", "modules").splitlines()
            if "module-null-sink" in line and f"sink_name={sink} " in line.split("\t", 2)[-1] + " "
        )
        self._pactl("unload-module", module)
        self._unplugged.add(sink)

    def plug(self, sink: str) -> None:
        """Bring an unplugged sink back, with its name and format; for the mic, its room noise too."""
        assert sink in self._unplugged, f"{sink} is not unplugged"
        if sink == "mic":
            rate, channels, fmt = self._mic
        else:
            (rate, channels), fmt = self._speaker, "s16le"
        self._pactl("load-module", "module-null-sink", f"sink_name={sink}", f"rate={rate}", f"channels={channels}",
                    f"format={fmt}")
        self._unplugged.discard(sink)
        self._pactl("set-default-sink", "speaker" if "speaker" not in self._unplugged else sink)
        if "mic" not in self._unplugged:
            self._pactl("set-default-source", "mic.monitor")
        if sink == "mic":
            self._stop_feeder()
            self._feed_silence_forever()

    def restore(self) -> None:
        """Plug back whatever is unplugged (for the next test on this rig)."""
        for sink in sorted(self._unplugged):
            self.plug(sink)

    def _pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env={**os.environ, **self.env()}, capture_output=True, text=True,
                              timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _index_of(self, kind: str, name: str) -> str:
        for line in self._pactl("list", "short", kind).splitlines():
            fields = line.split("\t")
            if len(fields) > 1 and fields[1] == name:
                return fields[0]
        raise RuntimeError(f"the rig has no {kind[:-1]} {name}")

    def _streams_on(self, kind: str, owner: str) -> list[str]:
        return [f[0] for f in (line.split("\t") for line in self._pactl("list", "short", kind).splitlines())
                if len(f) > 1 and f[1] == owner]

    def _cli(self, commands: list[str]) -> str:
        """Run commands through PulseAudio's CLI protocol (pactl cannot kill a stream)."""
        if not commands:
            return ""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as cli:
            cli.settimeout(10)
            cli.connect(str(self._cli_socket))
            cli.sendall(("\n".join(commands) + "\n").encode())
            cli.shutdown(socket.SHUT_WR)  # the server answers, then closes at end of input
            answer = b""
            while chunk := cli.recv(4096):
                answer += chunk
        return answer.decode(errors="replace")

    def _ready(self, env: dict[str, str]) -> bool:
        if not self.socket.exists():
            return False
        probe = subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=5)
        return probe.returncode == 0

    def stop(self) -> None:
        self._stop_feeder()
        if self._recorder is not None and self._recorder.poll() is None:
            self._recorder.kill()
            self._recorder.wait(timeout=5)
        if self._server is not None and self._server.poll() is None:
            os.killpg(self._server.pid, signal.SIGTERM)
            try:
                self._server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._server.pid, signal.SIGKILL)
                self._server.wait(timeout=5)

    # -- audio in and out
    def play_into_mic(self, pcm16: bytes, rate: int) -> subprocess.Popen:
        """Play mono s16le into the `mic` sink (paced); returns the pacat process."""
        env = {**os.environ, **self.env()}
        proc = subprocess.Popen(
            ["pacat", "--playback", "-d", "mic", "--rate", str(rate), "--channels", "1", "--format", "s16le", "--raw"],
            stdin=subprocess.PIPE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            proc.stdin.write(pcm16)  # a pacat that died says so here
        finally:
            _close_quietly(proc.stdin)
        return proc

    def start_recording_speaker(self, path: Path, rate: int = 48000) -> None:
        """Record what reaches the speaker sink as mono s16le at `rate` into `path`."""
        env = {**os.environ, **self.env()}
        self._recorder = subprocess.Popen(
            ["parecord", "-d", "speaker.monitor", "--rate", str(rate), "--channels", "1", "--format", "s16le",
             "--raw", "--latency-msec=20", str(path)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop_recording_speaker(self) -> None:
        if self._recorder is not None:
            self._recorder.send_signal(signal.SIGINT)
            try:
                self._recorder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._recorder.kill()
                self._recorder.wait(timeout=5)
            self._recorder = None
