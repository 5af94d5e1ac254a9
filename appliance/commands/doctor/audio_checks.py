"""Doctor's checks of the sound: both devices open at a usable format, and the microphone hears.

The devices are opened with the appliance's own code (`find_device`, `Capture`), so a pass
here means the daemon will open them the same way.  Each check makes and ends its own
PortAudio instance, and closes on a thread it will not wait on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from appliance.commands.doctor.machine import CheckContext, DoctorEnv, blocking, os_error_text, release
from appliance.commands.doctor.report import Check, failed, passed

__all__ = ["DEVICE_BUSY_HINT", "MIC_WAIT_S", "SERVICE_NAME", "check_audio_devices", "check_microphone"]

#: the microphone check waits this long for its audio (the first callback of some devices
#: comes more than a second after the stream opens)
MIC_WAIT_S = 6.0
SERVICE_NAME = "appliance.service"

_PYAUDIO_ADVICE = (
    "PyAudio is not installed: apt install portaudio19-dev python3-dev gcc, then rerun "
    "scripts/bootstrap.sh (or scripts/install.sh on the appliance)"
)
DEVICE_BUSY_HINT = (
    f"if the appliance is running it holds the sound card: stop it first (sudo systemctl stop {SERVICE_NAME})"
)


async def _start_pyaudio(env: DoctorEnv, name: str, alsa_tool: str) -> Any:
    """A PyAudio instance, or the failed Check that says why there is none."""
    try:
        return await blocking(env.pa_factory, name="doctor-pyaudio")
    except ImportError:
        return failed(name, "PyAudio is missing", _PYAUDIO_ADVICE)
    except OSError as exc:
        return failed(name, f"PortAudio did not start: {os_error_text(exc)}", f"check that ALSA works: {alsa_tool}")


# --------------------------------------------------------------------------- audio devices


async def check_audio_devices(ctx: CheckContext) -> Check:
    name = "audio-devices"
    env, audio = ctx.env, ctx.cfg.audio
    from appliance.audio.devices import AudioDeviceError, choose_input_format, find_device
    from appliance.audio.output_format import choose_output_format

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
        found, problems = await blocking(probe, name="doctor-devices")
    finally:
        await release(pa.terminate)
    if problems:
        return failed(
            name,
            "; ".join(problems + found),
            f"run `appliance devices` and set audio.input_device / audio.output_device to part of a listed name; "
            f"{DEVICE_BUSY_HINT}",
        )
    return passed(name, "; ".join(found))


# --------------------------------------------------------------------------- microphone


def _dbfs(value: float) -> str:
    if value <= 0:
        return "-inf dBFS"
    return f"{20 * math.log10(value / 32768):.0f} dBFS"


async def check_microphone(ctx: CheckContext) -> Check:
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
            fmt = await blocking(capture.start, name="doctor-capture")
        except AudioDeviceError as exc:
            return failed(name, f"cannot open the microphone: {exc}", f"see the audio-devices check; {DEVICE_BUSY_HINT}")
        device_name = fmt.device.name
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), MIC_WAIT_S)
        heard = list(frames)
    finally:
        await release(lambda: (capture.close(), pa.terminate()))

    if not heard:
        return failed(
            name,
            f'no audio from "{device_name}" within {MIC_WAIT_S:g} s',
            f'the device opened but delivers nothing: try `arecord -D <device> -d 2 test.wav`; {DEVICE_BUSY_HINT}',
        )
    seconds = len(heard) * FRAME_MS / 1000
    if len(heard) < wanted:
        return failed(
            name,
            f'only {seconds:.2f} s of audio from "{device_name}" in {MIC_WAIT_S:g} s',
            "the device delivers audio far slower than real time: set audio.input_rate to the rate it really runs at",
        )
    import numpy as np

    samples = np.frombuffer(b"".join(heard), dtype="<i2").astype(np.float64)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples * samples)))
    if peak == 0:
        return failed(
            name,
            f'{seconds:.1f} s from "{device_name}" is digital silence (every sample is 0)',
            "turn the capture on and up: alsamixer, F6 to pick the card, F4 for capture, space toggles the capture "
            "switch, raise the gain; with a one-mic I2S board check audio.input_channel picks the slot the mic is on",
        )
    return passed(name, f'{seconds:.1f} s from "{device_name}": peak {_dbfs(peak)}, average {_dbfs(rms)}')
