"""`appliance doctor`: check, one thing at a time, what the appliance needs to work on this box.

Each check is a small coroutine that returns a `Check`: a name, pass or fail, what it saw,
and (on failure) what to do about it.  They run in a fixed order, each under its own time
limit, so one that hangs (a DNS lookup, a busy sound card) is reported as failed and the rest
still run.  Blocking work runs on daemon threads of our own rather than the event loop's
executor: `asyncio.run` waits for executor threads at exit, so a hung lookup there would
hang doctor after all.

Everything a check touches outside Python (commands, DNS, TLS, sound cards, GPIO, the
clock, the disk) comes from `DoctorEnv`, so tests can swap in stand-ins where this machine
has no real part.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from appliance.live.endpoint import endpoint_url
from appliance.netutil import is_loopback_host
from appliance.settings.keys import load_api_key
from appliance.settings.paths import state_dir
from appliance.settings.schema import Config, ConfigError
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME, Secret
from appliance.settings.validate import config_problems, led_pins

__all__ = [
    "CHECK_NAMES",
    "Check",
    "CommandResult",
    "DoctorEnv",
    "add_arguments",
    "config_error_command",
    "doctor_command",
    "format_line",
    "parse_throttled",
    "run_checks",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a year before this means the clock was never set (a Pi has no battery-backed clock)
MIN_PLAUSIBLE_YEAR = 2025
#: less free space than this under the state directory fails the disk check
MIN_FREE_BYTES = 100 * 1024 * 1024
#: how long the setup round trip may take, at most (the per-check limit is a little longer)
SETUP_ROUND_TRIP_S = 7.0
DNS_TIMEOUT_S = 4.0
CONNECT_TIMEOUT_S = 4.0
COMMAND_TIMEOUT_S = 4.0
#: the microphone check waits this long for its audio (the first callback of some devices
#: comes more than a second after the stream opens)
MIC_WAIT_S = 6.0
#: how long closing a device may take before doctor stops waiting for it
CLOSE_WAIT_S = 3.0
SERVICE_NAME = "appliance.service"

_PYAUDIO_ADVICE = (
    "PyAudio is not installed: apt install portaudio19-dev python3-dev gcc, then rerun "
    "scripts/bootstrap.sh (or scripts/install.sh on the appliance)"
)
_DEVICE_BUSY_HINT = (
    f"if the appliance is running it holds the sound card: stop it first (sudo systemctl stop {SERVICE_NAME})"
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One check's verdict.  `advice` says what to do; it is empty when the check passed."""

    name: str
    ok: bool
    detail: str
    advice: str = ""

    @property
    def skipped(self) -> bool:
        return self.ok and self.detail.startswith("skipped:")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "advice": self.advice}


def _pass(name: str, detail: str) -> Check:
    return Check(name, True, detail, "")


def _fail(name: str, detail: str, advice: str) -> Check:
    return Check(name, False, detail, advice)


def _skip(name: str, why: str) -> Check:
    return Check(name, True, f"skipped: {why}", "")


# --------------------------------------------------------------------------- the outside world


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str = ""


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run a short command and capture its output; never raises (a failure is a result)."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return CommandResult(-1, "", f"no answer within {timeout:g} s")
    except OSError as exc:
        return CommandResult(127, "", exc.strerror or str(exc))
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _open_pyaudio() -> Any:
    from appliance.audio.devices import open_pyaudio

    return open_pyaudio()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DoctorEnv:
    """What the checks use of the machine; every field can be replaced in tests."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    which: Callable[[str], str | None] = shutil.which
    run: Callable[[Sequence[str], float], CommandResult] = run_command
    getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo
    ssl_context: Callable[[], ssl.SSLContext] = ssl.create_default_context
    #: a gpiozero pin factory; None means gpiozero's default (lgpio on a Pi)
    pin_factory: Any = None
    #: makes a fresh `pyaudio.PyAudio()`; raises ImportError when PyAudio is missing
    pa_factory: Callable[[], Any] = _open_pyaudio
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    now: Callable[[], datetime] = _utc_now
    #: how long one check may take before it counts as failed
    check_timeout_s: float = 10.0
    #: how much microphone audio the microphone check listens to
    mic_seconds: float = 1.0


@dataclass
class _Context:
    cfg: Config
    env: DoctorEnv


async def _blocking(fn: Callable[[], T], *, name: str = "doctor") -> T:
    """Run `fn` on a daemon thread and await its result.

    Not the loop's default executor: if `fn` never returns, a daemon thread does not keep
    the process alive at exit, while an executor thread would make `asyncio.run` wait for it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


async def _release(fn: Callable[[], object]) -> None:
    """Close something on a thread, waiting at most CLOSE_WAIT_S (also while being cancelled)."""
    task = asyncio.ensure_future(_blocking(fn, name="doctor-close"))
    with contextlib.suppress(BaseException):
        await asyncio.wait({task}, timeout=CLOSE_WAIT_S)
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            log.debug("closing failed: %s", exc)


def _endpoint_parts(cfg: Config) -> tuple[str, str, int]:
    """(scheme, host, port) of the configured endpoint."""
    parts = urlsplit(endpoint_url(cfg.live))
    scheme = parts.scheme or "wss"
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, parts.hostname or "", port or (443 if scheme == "wss" else 80)


# --------------------------------------------------------------------------- 1. config


async def check_config(ctx: _Context) -> Check:
    name = "config"
    cfg = ctx.cfg
    problems = config_problems(cfg)
    if problems:
        return _fail(
            name,
            "; ".join(problems),
            f"fix this in {cfg.source} (or wherever the value was set: environment or --set), then run doctor again",
        )
    _scheme, host, _port = _endpoint_parts(cfg)
    return _pass(name, f"{cfg.source}; endpoint {host}, model {cfg.live.model}")


# --------------------------------------------------------------------------- 2. api key


def _key_source(cfg: Config, environ: Mapping[str, str]) -> tuple[str, Path | None]:
    """Where `load_api_key` took the key from (it tries the same order): a label, and the file if any."""
    if environ.get(API_KEY_ENV, "").strip():
        return f"environment variable {API_KEY_ENV}", None
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    if credentials:
        credential = Path(credentials) / CREDENTIAL_NAME
        if credential.exists():
            return f"systemd credential {credential}", credential
    path = Path(cfg.live.api_key_file).expanduser()
    return f"live.api_key_file {path}", path


async def check_api_key(ctx: _Context) -> Check:
    name = "api-key"
    cfg, environ = ctx.cfg, ctx.env.environ
    warnings: list[str] = []
    try:
        key = load_api_key(cfg, env=environ, warn=warnings.append)
    except ConfigError as exc:
        return _fail(
            name,
            str(exc),
            f"put the key alone on one line in a mode-600 file named by live.api_key_file "
            f"(or the systemd credential {CREDENTIAL_NAME})",
        )
    _scheme, host, _port = _endpoint_parts(cfg)
    if key is None:
        if is_loopback_host(host):
            return _skip(name, f"no key, and the endpoint {host} is on this machine (the daemon runs without one)")
        return _fail(
            name,
            "no API key found",
            f"on the Pi run `sudo scripts/install.sh --api-key-file FILE` (the service then gets it as "
            f"the systemd credential gemini-api-key); elsewhere set {API_KEY_ENV}, or put it in a "
            f"chmod-600 file named by live.api_key_file",
        )
    source, path = _key_source(cfg, environ)
    # load_api_key warns about its own key file; a credential file handed over by hand (not by
    # systemd, which makes it private) deserves the same check.
    mode = _file_mode(path) if path is not None else None
    if warnings or (mode is not None and mode & 0o077):
        shown = f"{mode:03o}" if mode is not None else "unknown"
        return _fail(name, f"key file {path} can be read by group or others (mode {shown})", f"chmod 600 {path}")
    return _pass(name, f"from {source}")


def _file_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


# --------------------------------------------------------------------------- 3. clock


async def check_clock(ctx: _Context) -> Check:
    name = "clock"
    env = ctx.env
    now = env.now()
    shown = now.strftime("%Y-%m-%d %H:%M UTC") if now.tzinfo else now.strftime("%Y-%m-%d %H:%M")
    advice = (
        "TLS fails with a wrong clock and a Pi has no battery-backed clock: check the network, then "
        "`timedatectl timesync-status`; systemd-timesyncd (or chrony) must be running and able to reach a time server"
    )
    tool = env.which("timedatectl")
    note = "no timedatectl"
    if tool:
        result = await _blocking(lambda: env.run([tool, "show", "-p", "NTPSynchronized", "--value"], COMMAND_TIMEOUT_S))
        answer = result.stdout.strip().lower()
        if result.returncode == 0 and answer == "yes":
            return _pass(name, f"synchronised (timedatectl); {shown}")
        if result.returncode == 0 and answer == "no":
            return _fail(name, f"not synchronised yet (timedatectl says NTPSynchronized=no); it reads {shown}", advice)
        reason = _first_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
        note = f"timedatectl gave no answer ({reason})"
    if now.year < MIN_PLAUSIBLE_YEAR:
        return _fail(name, f"{note}, and the clock reads {shown}, which cannot be right", advice)
    return _pass(name, f"{note}; the clock reads {shown}, which is plausible (synchronisation not confirmed)")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:160]
    return ""


# --------------------------------------------------------------------------- 4. network


async def check_network(ctx: _Context) -> Check:
    name = "network"
    env = ctx.env
    scheme, host, port = _endpoint_parts(ctx.cfg)
    if not host:
        return _fail(name, "the endpoint names no host", "set live.endpoint to a wss:// URL, or leave it empty")
    try:
        infos = await asyncio.wait_for(
            _blocking(lambda: env.getaddrinfo(host, port, type=socket.SOCK_STREAM), name="doctor-dns"),
            DNS_TIMEOUT_S,
        )
    except TimeoutError:
        return _fail(name, f"looking up {host} took longer than {DNS_TIMEOUT_S:g} s", _dns_advice(host))
    except (OSError, UnicodeError) as exc:
        return _fail(name, f"cannot resolve {host}: {_os_error_text(exc)}", _dns_advice(host))
    addresses = list(dict.fromkeys((info[0], info[4][0]) for info in infos if info and len(info) >= 5))
    if not addresses:
        return _fail(name, f"{host} resolves to no address", _dns_advice(host))

    use_tls = scheme == "wss"
    context = env.ssl_context() if use_tls else None
    failures: list[str] = []
    for _family, address in addresses:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=context, server_hostname=host if use_tls else None),
                CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            failures.append(f"{address}: no answer within {CONNECT_TIMEOUT_S:g} s")
            continue
        except ssl.SSLCertVerificationError as exc:
            return _fail(
                name,
                f"TLS to {host}:{port} ({address}): the certificate did not verify ({exc.verify_message or exc.reason})",
                "check the clock (see the clock check: a wrong date makes every certificate look invalid); "
                "if the network intercepts TLS, its certificate must be in the system store",
            )
        except (ssl.SSLError, OSError) as exc:
            failures.append(f"{address}: {_os_error_text(exc)}")
            continue
        tls_text = ""
        if use_tls:
            ssl_object = writer.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
            tls_text = f", {version or 'TLS'} handshake done"
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        how = "TLS" if use_tls else "TCP (plain ws://, this machine only)"
        where = host if address == host else f"{host} -> {address}"
        return _pass(name, f"{where}; {how} to port {port} connects{tls_text}")
    advice = (
        f"nothing answers at {host}:{port}: start the emulator (appliance emulator) or fix live.endpoint"
        if is_loopback_host(host)
        else f"check the network connection and any firewall between this box and {host} port {port}"
    )
    return _fail(name, f"cannot connect to {host}:{port} ({'; '.join(failures)})", advice)


def _dns_advice(host: str) -> str:
    return f"check the network connection and DNS (/etc/resolv.conf; try `getent hosts {host}`)"


def _os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- 5. key accepted


async def check_key_accepted(ctx: _Context) -> Check:
    name = "key-accepted"
    cfg = ctx.cfg
    try:
        key = load_api_key(cfg, env=ctx.env.environ, warn=lambda _message: None)
    except ConfigError as exc:
        return _fail(name, f"not tried: no usable API key ({exc})", "see the api-key check")
    _scheme, host, _port = _endpoint_parts(cfg)
    if key is None and not is_loopback_host(host):
        return _fail(name, "not tried: no API key", "see the api-key check")

    from appliance.live.from_config import session_from_config
    from appliance.live.connection import LinkChanged, LinkState
    from appliance.live.endpoint import InsecureEndpointError

    budget = min(cfg.live.setup_timeout_s, SETUP_ROUND_TRIP_S)
    quick = dataclasses.replace(cfg, live=dataclasses.replace(cfg.live, setup_timeout_s=budget))
    try:
        session = session_from_config(quick, key)
    except InsecureEndpointError as exc:
        return _fail(name, f"not tried: {exc}", "see the config check")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget + 0.5
    session.start()
    try:
        while session.state not in (LinkState.READY, LinkState.ERROR, LinkState.OFFLINE):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await session.wait_ready(min(remaining, 0.25))
        state = session.state
        reason = session.last_error
        code = next(
            (e.close_code for e in reversed(session.drain_events()) if isinstance(e, LinkChanged) and e.close_code),
            None,
        )
    finally:
        await session.close()

    model = cfg.live.model
    if state is LinkState.READY:
        return _pass(name, f"{host} accepted the session setup for {model}")
    if state is LinkState.ERROR:
        shown = f"{code} {reason}" if code else reason
        return _fail(name, f"the service refused the session: {shown}", _refusal_advice(reason, model))
    if state is LinkState.OFFLINE:
        return _fail(name, f"not reached: {reason or 'connection failed'}", "see the network check")
    return _fail(
        name,
        f"no setupComplete from {host} within {budget:g} s" + (f" ({reason})" if reason else ""),
        "the service is slow or unreachable: see the network check, then try again",
    )


def _refusal_advice(reason: str, model: str) -> str:
    text = reason.lower()
    if "api key" in text or "unregistered callers" in text or "permission" in text:
        return (
            "the key was refused: make a new key in Google AI Studio and put it in the key file "
            "(scripts/install.sh --api-key-file FILE replaces it)"
        )
    if "not found" in text or "not supported" in text or "model" in text:
        return f"live.model {model!r} is not available to this key: set live.model to a Live model it can use"
    return "the service refused the configuration: fix the setting the reason names, then run doctor again"


# --------------------------------------------------------------------------- 6. audio devices


async def _start_pyaudio(env: DoctorEnv, name: str, alsa_tool: str) -> Any:
    """A PyAudio instance, or the failed Check that says why there is none."""
    try:
        return await _blocking(env.pa_factory, name="doctor-pyaudio")
    except ImportError:
        return _fail(name, "PyAudio is missing", _PYAUDIO_ADVICE)
    except OSError as exc:
        return _fail(name, f"PortAudio did not start: {_os_error_text(exc)}", f"check that ALSA works: {alsa_tool}")


async def check_audio_devices(ctx: _Context) -> Check:
    name = "audio-devices"
    env, audio = ctx.env, ctx.cfg.audio
    from appliance.audio.devices import AudioDeviceError, choose_input_format, find_device
    from appliance.audio.speaker import choose_output_format

    pa = await _start_pyaudio(env, name, "aplay -l")
    if isinstance(pa, Check):
        return pa

    def probe() -> tuple[list[str], list[str]]:
        found: list[str] = []
        problems: list[str] = []
        try:
            mic = find_device(pa, audio.input_device, direction="input")
            fmt = choose_input_format(pa, mic, audio)
            found.append(f'microphone "{mic.name}" opens at {fmt.describe()}')
        except AudioDeviceError as exc:
            problems.append(f"microphone: {exc}")
        try:
            speaker = find_device(pa, audio.output_device, direction="output")
            out = choose_output_format(pa, speaker, audio.output_rate)
            found.append(f'speaker "{speaker.name}" opens at {out.describe()}')
        except AudioDeviceError as exc:
            problems.append(f"speaker: {exc}")
        return found, problems

    try:
        found, problems = await _blocking(probe, name="doctor-devices")
    finally:
        await _release(pa.terminate)
    if problems:
        return _fail(
            name,
            "; ".join(problems + found),
            f"run `appliance devices` and set audio.input_device / audio.output_device to part of a listed name; "
            f"{_DEVICE_BUSY_HINT}",
        )
    return _pass(name, "; ".join(found))


# --------------------------------------------------------------------------- 7. microphone


def _dbfs(value: float) -> str:
    if value <= 0:
        return "-inf dBFS"
    return f"{20 * math.log10(value / 32768):.0f} dBFS"


async def check_microphone(ctx: _Context) -> Check:
    name = "microphone"
    env, audio = ctx.env, ctx.cfg.audio
    from appliance.audio.capture import Capture
    from appliance.audio.devices import AudioDeviceError
    from appliance.audio.frames import FRAME_MS

    pa = await _start_pyaudio(env, name, "arecord -l")
    if isinstance(pa, Check):
        return pa

    wanted = max(1, round(env.mic_seconds * 1000 / FRAME_MS))
    frames: list[bytes] = []
    enough = asyncio.Event()

    def on_frame(frame: bytes) -> None:
        if len(frames) < wanted:
            frames.append(frame)
            if len(frames) == wanted:
                enough.set()

    capture = Capture(audio, on_frame, asyncio.get_running_loop(), pa=pa)
    device_name = audio.input_device
    try:
        try:
            fmt = await _blocking(capture.start, name="doctor-capture")
        except AudioDeviceError as exc:
            return _fail(name, f"cannot open the microphone: {exc}", f"see the audio-devices check; {_DEVICE_BUSY_HINT}")
        device_name = fmt.device.name
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), MIC_WAIT_S)
        heard = list(frames)
    finally:
        await _release(lambda: (capture.close(), pa.terminate()))

    if not heard:
        return _fail(
            name,
            f'no audio from "{device_name}" within {MIC_WAIT_S:g} s',
            f'the device opened but delivers nothing: try `arecord -D <device> -d 2 test.wav`; {_DEVICE_BUSY_HINT}',
        )
    seconds = len(heard) * FRAME_MS / 1000
    if len(heard) < wanted:
        return _fail(
            name,
            f'only {seconds:.2f} s of audio from "{device_name}" in {MIC_WAIT_S:g} s',
            "the device delivers audio far slower than real time: set audio.input_rate to the rate it really runs at",
        )
    import numpy as np

    samples = np.frombuffer(b"".join(heard), dtype="<i2").astype(np.float64)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples * samples)))
    if peak == 0:
        return _fail(
            name,
            f'{seconds:.1f} s from "{device_name}" is digital silence (every sample is 0)',
            "turn the capture on and up: alsamixer, F6 to pick the card, F4 for capture, space toggles the capture "
            "switch, raise the gain; with a one-mic I2S board check audio.input_channel picks the slot the mic is on",
        )
    return _pass(name, f'{seconds:.1f} s from "{device_name}": peak {_dbfs(peak)}, average {_dbfs(rms)}')


# --------------------------------------------------------------------------- 8. gpio


async def check_gpio(ctx: _Context) -> Check:
    name = "gpio"
    cfg, env = ctx.cfg, ctx.env
    want_button = cfg.button.enabled
    want_leds = cfg.leds.kind != "none"
    if not want_button and not want_leds:
        return _skip(name, 'button.enabled = false and leds.kind = "none"')

    from appliance.hw.button import ButtonError, GpioButton
    from appliance.hw.leds import LedsError, build_leds

    opened: list[Any] = []
    parts: list[str] = []
    try:
        if want_button:
            try:
                button = GpioButton(cfg.button, asyncio.get_running_loop(), lambda _gesture: None,
                                    pin_factory=env.pin_factory)
            except ButtonError as exc:
                return _fail(name, f"button: {exc}", _gpio_advice(str(exc), "button.pin"))
            opened.append(button)
            parts.append(f"button on GPIO{cfg.button.pin} ({'pull-up' if cfg.button.pull_up else 'no pull-up'})")
        else:
            parts.append("no button (button.enabled = false)")
        if want_leds:
            try:
                leds = build_leds(cfg.leds, pin_factory=env.pin_factory)
            except LedsError as exc:
                return _fail(name, f"LEDs: {exc}", _gpio_advice(str(exc), "the [leds] pins"))
            opened.append(leds)
            pins = ", ".join(str(pin) for _key, pin in led_pins(cfg))
            parts.append(f"{cfg.leds.kind} LEDs on GPIO {pins}")
        else:
            parts.append('no LEDs (leds.kind = "none")')
        factory = env.pin_factory
        if factory is None:
            with contextlib.suppress(Exception):
                import gpiozero

                factory = gpiozero.Device.pin_factory
        driver = f" via {type(factory).__name__}" if factory is not None else ""
        return _pass(name, "; ".join(parts) + driver)
    finally:
        for device in reversed(opened):
            with contextlib.suppress(Exception):
                device.close()


def _gpio_advice(message: str, setting: str) -> str:
    if "unable to locate Pi revision" in message:
        return (
            'this machine is not a Raspberry Pi: set button.enabled = false and leds.kind = "none" '
            "(use `appliance ctl` or `appliance run --keyboard` instead of the button)"
        )
    if "No module named 'lgpio'" in message:
        # gpiozero fell back past lgpio; on a Pi 5 nothing after it works
        return (
            "lgpio is missing from the appliance's Python: apt install python3-lgpio and make the venv with "
            "--system-site-packages (scripts/install.sh does both); or set button.enabled = false and "
            'leds.kind = "none"'
        )
    if setting == "button.pin":
        return "fix button.pin or the wiring, or set button.enabled = false (then use `appliance ctl`)"
    return f'fix {setting} or the wiring, or set leds.kind = "none"'


# --------------------------------------------------------------------------- 9. power


#: bit -> what it means, from `vcgencmd get_throttled`
THROTTLE_BITS: dict[int, str] = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
_THROTTLED = re.compile(r"throttled\s*=\s*(0x[0-9a-fA-F]+|\d+)")


def parse_throttled(text: str) -> int | None:
    """The bitmask from `vcgencmd get_throttled` output (``throttled=0x50005``), or None."""
    match = _THROTTLED.search(text)
    if match is None:
        return None
    return int(match.group(1), 0)


def describe_throttled(mask: int) -> list[str]:
    words = [meaning for bit, meaning in THROTTLE_BITS.items() if mask & (1 << bit)]
    unknown = mask & ~sum(1 << bit for bit in THROTTLE_BITS)
    if unknown:
        words.append(f"other flags {unknown:#x}")
    return words


async def check_power(ctx: _Context) -> Check:
    name = "power"
    env = ctx.env
    tool = env.which("vcgencmd")
    if not tool:
        return _skip(name, "no vcgencmd (not a Raspberry Pi OS system)")
    result = await _blocking(lambda: env.run([tool, "get_throttled"], COMMAND_TIMEOUT_S))
    mask = parse_throttled(result.stdout) if result.returncode == 0 else None
    if mask is None:
        said = _first_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
        return _fail(name, f"vcgencmd get_throttled gave no reading ({said})",
                     "run `vcgencmd get_throttled` by hand to see why")
    if mask == 0:
        return _pass(name, "no under-voltage or throttling since boot (throttled=0x0)")
    words = describe_throttled(mask)
    power_problem = mask & ((1 << 0) | (1 << 16))
    advice = (
        "the supply sags: use the official power supply for this Pi model and a short, thick USB cable; "
        "a speaker amplifier on the 5 V pin adds to the load"
        if power_problem
        else "the Pi gets too hot or is throttled: give it air or a heatsink"
    )
    return _fail(name, f"{', '.join(words)} (throttled={mask:#x})", advice)


# --------------------------------------------------------------------------- 10. disk


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _bytes_text(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit in ("B", "KB") else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


async def check_disk(ctx: _Context) -> Check:
    name = "disk"
    wanted = state_dir(ctx.cfg, ctx.env.environ)
    where = _existing_ancestor(wanted)
    try:
        usage = await _blocking(lambda: ctx.env.disk_usage(where))
    except OSError as exc:
        return _fail(name, f"cannot read free space under {where}: {_os_error_text(exc)}", "check the mount")
    free = float(usage.free)
    text = f"{_bytes_text(free)} free under {wanted}" + ("" if where == wanted else f" (at {where})")
    if free < MIN_FREE_BYTES:
        return _fail(
            name,
            f"only {text}; at least {_bytes_text(MIN_FREE_BYTES)} is needed",
            "free some space: sudo apt clean; sudo journalctl --vacuum-size=50M; remove old files",
        )
    return _pass(name, text)


# --------------------------------------------------------------------------- running them


@dataclass(frozen=True)
class _Spec:
    name: str
    run: Callable[[_Context], Awaitable[Check]]
    on_timeout: str


CHECKS: tuple[_Spec, ...] = (
    _Spec("config", check_config, "report this as a bug"),
    _Spec("api-key", check_api_key, "check the disk holding the key file"),
    _Spec("clock", check_clock, "timedatectl hangs: check systemd-timedated"),
    _Spec("network", check_network, "check the network connection and DNS"),
    _Spec("key-accepted", check_key_accepted, "the service is slow or unreachable: see the network check"),
    _Spec("audio-devices", check_audio_devices, f"a sound card does not answer; {_DEVICE_BUSY_HINT}"),
    _Spec("microphone", check_microphone, f"the microphone does not answer; {_DEVICE_BUSY_HINT}"),
    _Spec("gpio", check_gpio, "the GPIO driver does not answer: reboot, then try again"),
    _Spec("power", check_power, "vcgencmd hangs: reboot, then try again"),
    _Spec("disk", check_disk, "the disk does not answer: check the SD card and its mount"),
)
CHECK_NAMES: tuple[str, ...] = tuple(spec.name for spec in CHECKS)


async def _run_one(spec: _Spec, ctx: _Context) -> Check:
    """Run one check under its time limit; a crash or a hang becomes a failed check."""
    limit = ctx.env.check_timeout_s
    task = asyncio.ensure_future(spec.run(ctx))
    done, _pending = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()  # not awaited: a check stuck in a thread must not hold doctor up
        return _fail(spec.name, f"no result within {limit:g} s", spec.on_timeout)
    try:
        return task.result()
    except Exception as exc:  # noqa: BLE001 - a bug in one check must not stop the others
        log.debug("check %s crashed", spec.name, exc_info=True)
        text = " ".join(str(exc).split()) or type(exc).__name__
        return _fail(spec.name, f"the check itself failed: {type(exc).__name__}: {text}",
                     "report this as a bug, with the line above")


async def run_checks(
    cfg: Config,
    env: DoctorEnv | None = None,
    *,
    only: Sequence[str] = (),
    on_result: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run the checks (all, or those named in `only`) in order; `on_result` sees each as it finishes."""
    unknown = [name for name in only if name not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r}; checks: {', '.join(CHECK_NAMES)}")
    ctx = _Context(cfg, env or DoctorEnv())
    redact = _redactor(cfg, ctx.env.environ)
    results = []
    for spec in CHECKS:
        if only and spec.name not in only:
            continue
        result = await _run_one(spec, ctx)
        result = dataclasses.replace(result, detail=redact(result.detail), advice=redact(result.advice))
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _redactor(cfg: Config, environ: Mapping[str, str]) -> Callable[[str], str]:
    """Second line of defence: no check's text may carry the key, whatever went wrong."""
    try:
        key: Secret | None = load_api_key(cfg, env=environ, warn=lambda _message: None)
    except ConfigError:
        key = None
    value = key.reveal() if key is not None else ""
    if len(value) < 4:
        return lambda text: text
    return lambda text: text.replace(value, "[redacted]")


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Doctor reports every problem itself; the modules it borrows would log them a second time.

    Left alone at debug level, where the extra detail is what was asked for.
    """
    logger = logging.getLogger("appliance")
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --------------------------------------------------------------------------- output and the command


def format_line(check: Check) -> str:
    if check.ok:
        return f"PASS {check.name}: {check.detail}"
    advice = f" — {check.advice}" if check.advice else ""
    return f"FAIL {check.name}: {check.detail}{advice}"


def summary_line(results: Sequence[Check]) -> str:
    failed = [c.name for c in results if not c.ok]
    skipped = sum(1 for c in results if c.skipped)
    skipped_text = f" ({skipped} skipped)" if skipped else ""
    if not failed:
        return f"doctor: all {len(results)} checks passed{skipped_text}"
    return f"doctor: {len(failed)} of {len(results)} checks failed: {', '.join(failed)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"ok": ..., "checks": [...]} instead of text')
    parser.add_argument("--only", action="append", default=[], choices=CHECK_NAMES, metavar="CHECK",
                        help=f"run only this check; repeatable ({', '.join(CHECK_NAMES)})")


_CONFIG_ADVICE = (
    "fix this in the config file (or wherever the value was set: environment or --set), then run doctor again"
)


def config_error_command(
    message: str,
    args: argparse.Namespace,
    *,
    printer: Callable[[str], None] = print,
) -> int:
    """`appliance doctor` when the config does not load: one failed `config` check, exit 1.

    Nothing else can be checked without a config, but a caller of `doctor --json` still
    gets the same JSON shape it always gets, so it can read what went wrong.
    """
    result = _fail("config", " ".join(message.split()), _CONFIG_ADVICE)
    if getattr(args, "json", False):
        printer(json.dumps({"ok": False, "checks": [result.as_dict()]}, indent=2))
    else:
        printer(format_line(result))
        printer(summary_line([result]))
    return 1


async def doctor_command(
    cfg: Config,
    args: argparse.Namespace,
    *,
    printer: Callable[[str], None] = print,
    env: DoctorEnv | None = None,
) -> int:
    """`appliance doctor`: 0 when every check passed, 1 otherwise."""
    as_json = bool(getattr(args, "json", False))
    only = tuple(getattr(args, "only", None) or ())
    stream = None if as_json else (lambda check: printer(format_line(check)))
    with _quiet_logs():
        results = await run_checks(cfg, env, only=only, on_result=stream)
    ok = all(check.ok for check in results)
    if as_json:
        printer(json.dumps({"ok": ok, "checks": [check.as_dict() for check in results]}, indent=2))
    else:
        printer(summary_line(results))
    return 0 if ok else 1
