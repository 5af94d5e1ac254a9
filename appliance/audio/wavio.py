"""Reading and writing WAV files without surprises.

The stdlib ``wave`` module only reads integer PCM, so a float or WAVE_FORMAT_EXTENSIBLE file (which is what most
editors and ``sox`` write for 24-bit or multichannel audio) fails with an obscure message. This reader parses the
RIFF chunks itself, decodes every common sample format to float32, and reports problems as one line that names
the file. Writing always produces plain 16-bit PCM, atomically, so a crash never leaves half a file behind.

A WAV file is untrusted input: only regular files of at most `MAX_WAV_BYTES` are read (a FIFO or /dev/zero is
refused, not waited on), rates outside `MIN_RATE`..`MAX_RATE` are refused before any audio is decoded, and nothing
is ever sized from what the header claims.  `read_wav_as_pcm16`, the path of a recorded question, also refuses
more than `MAX_QUESTION_SECONDS` of audio and rates that only an enormous resampling filter could convert.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.atomicfile import FileRefused, read_regular_file
from appliance.audio.resample import float_to_pcm16, resample, select_or_mix_channels

__all__ = [
    "MAX_QUESTION_SECONDS",
    "MAX_RATE",
    "MAX_WAV_BYTES",
    "MIN_RATE",
    "WavAudio",
    "WavError",
    "read_wav",
    "read_wav_as_pcm16",
    "write_wav",
]

#: the biggest WAV file read at all: 5 minutes of 48 kHz 16-bit stereo fit (about 55 MiB)
MAX_WAV_BYTES = 64 * 1024 * 1024
#: sample rates accepted, in Hz: telephone quality up to studio quality
MIN_RATE = 8000
MAX_RATE = 192000
#: the longest recorded question `read_wav_as_pcm16` converts
MAX_QUESTION_SECONDS = 300.0
# The resampler's filter grows with the terms of the reduced ratio dst/src: 44.1 kHz -> 16 kHz is 160/441,
# 11.025 kHz is 640/441, 44.056 kHz is 2000/5507 (about 50 MB), while an odd rate like 96001 Hz gives
# 16000/96001 and needs about 1 GB.  Every common rate stays well below this bound.
_MAX_RATIO_TERM = 6000
# Chunks scanned before giving up: real files have a handful; a file of empty chunks must not spin for seconds.
_MAX_CHUNKS = 10000

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
# The 14 bytes that follow the 2-byte format code in every KSDATAFORMAT_SUBTYPE_* GUID of the WAVE family.
_SUBFORMAT_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_PCM_BITS = (8, 16, 24, 32)
_FLOAT_BITS = (32, 64)


class WavError(Exception):
    """A WAV file could not be read; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class WavAudio:
    """Decoded audio. ``samples`` is float32 of shape (frames, channels) with values in [-1, 1]."""

    samples: np.ndarray
    rate: int
    channels: int
    sample_width_bits: int
    format: str  # "pcm" or "float"

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True)
class _Format:
    code: int  # _FORMAT_PCM or _FORMAT_FLOAT after resolving EXTENSIBLE
    channels: int
    rate: int
    block_align: int
    bits: int  # container size per sample


def _parse_fmt(where: str, body: bytes) -> _Format:
    if len(body) < 16:
        raise WavError(f"{where}: fmt chunk is only {len(body)} bytes, expected at least 16")
    code, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
    if code == _FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise WavError(f"{where}: WAVE_FORMAT_EXTENSIBLE fmt chunk is {len(body)} bytes, expected 40")
        guid = body[24:40]
        if guid[2:] != _SUBFORMAT_GUID_TAIL:
            raise WavError(f"{where}: unsupported WAVE_FORMAT_EXTENSIBLE subformat GUID {guid.hex()}")
        code = struct.unpack_from("<H", guid, 0)[0]
    if code not in (_FORMAT_PCM, _FORMAT_FLOAT):
        raise WavError(
            f"{where}: unsupported format code {code} (0x{code:04x}); only PCM (1) and IEEE float (3) are supported, "
            "convert it first, e.g. with `sox in.wav -e signed -b 16 out.wav`"
        )
    if channels == 0:
        raise WavError(f"{where}: fmt chunk declares zero channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(
            f"{where}: sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz; "
            "convert it first, e.g. with `sox in.wav -r 16000 out.wav`"
        )
    allowed = _PCM_BITS if code == _FORMAT_PCM else _FLOAT_BITS
    if bits not in allowed:
        kind = "PCM" if code == _FORMAT_PCM else "float"
        raise WavError(
            f"{where}: unsupported {kind} sample width {bits} bits (supported: {', '.join(map(str, allowed))})"
        )
    if block_align != channels * bits // 8:
        raise WavError(
            f"{where}: block align {block_align} does not match {channels} channel(s) of {bits}-bit samples"
        )
    return _Format(code, channels, rate, block_align, bits)


def _decode(data: bytes, fmt: _Format) -> np.ndarray:
    """Raw interleaved sample bytes -> float32 (frames, channels) in [-1, 1]."""
    frames = len(data) // fmt.block_align  # a trailing partial frame is dropped
    raw = data[: frames * fmt.block_align]
    if fmt.code == _FORMAT_FLOAT:
        values = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8")
        out = np.clip(np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    elif fmt.bits == 8:
        out = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 16:
        out = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = (value << 8) >> 8  # sign-extend from 24 bits
        out = value.astype(np.float32) / float(1 << 23)
    else:
        out = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    return np.ascontiguousarray(out.reshape(frames, fmt.channels), dtype=np.float32)


def read_wav(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_WAV_BYTES,
    max_seconds: float | None = None,
) -> WavAudio:
    """Read a PCM (8/16/24/32-bit), IEEE float (32/64-bit) or WAVE_FORMAT_EXTENSIBLE file.

    Unknown chunks (LIST, fact, cue ...) are skipped, odd-sized chunks honour their pad byte.
    Only a regular file of at most `max_bytes` is read; with `max_seconds`, longer audio is refused
    before it is decoded.  Raises WavError with a one-line message naming the file.
    """
    where = os.fspath(path)
    try:
        blob = read_regular_file(path, max_bytes)
    except FileRefused as exc:
        if exc.problem.startswith("is larger"):
            raise WavError(f"{where}: the file {exc.problem}; trim or convert it first") from None
        raise WavError(f"{where}: {exc.problem}") from None
    except OSError as exc:
        raise WavError(f"{where}: cannot read file: {exc.strerror or exc}") from None
    if len(blob) < 12 or blob[0:4] != b"RIFF" or blob[8:12] != b"WAVE":
        if blob[0:4] in (b"RIFX", b"RF64"):
            raise WavError(f"{where}: {blob[0:4].decode()} files are not supported, only little-endian RIFF WAVE")
        raise WavError(f"{where}: not a WAV file (no RIFF/WAVE header)")
    fmt: _Format | None = None
    data: bytes | None = None
    pos = 12
    chunks = 0
    while pos + 8 <= len(blob) and (fmt is None or data is None):
        chunks += 1
        if chunks > _MAX_CHUNKS:
            raise WavError(f"{where}: more than {_MAX_CHUNKS} chunks before the audio; this is not a usable WAV file")
        chunk_id, size = struct.unpack_from("<4sI", blob, pos)
        body_start = pos + 8
        body_end = body_start + size
        if chunk_id == b"fmt " and fmt is None:
            if body_end > len(blob):
                raise WavError(f"{where}: truncated: fmt chunk runs past the end of the file")
            fmt = _parse_fmt(where, blob[body_start:body_end])
        elif chunk_id == b"data" and data is None:
            if body_end > len(blob):
                missing = body_end - len(blob)
                raise WavError(f"{where}: truncated: data chunk declares {size} bytes but {missing} are missing")
            data = blob[body_start:body_end]
        pos = body_end + (size & 1)  # chunks are word-aligned: an odd size is followed by one pad byte
    if fmt is None:
        raise WavError(f"{where}: no fmt chunk, so the sample format is unknown")
    if data is None:
        if pos > len(blob):
            raise WavError(f"{where}: truncated: a chunk runs past the end of the file and no data chunk was found")
        raise WavError(f"{where}: no data chunk, the file contains no audio")
    seconds = len(data) // fmt.block_align / fmt.rate
    if max_seconds is not None and seconds > max_seconds:
        raise WavError(
            f"{where}: {seconds:.0f} s of audio is longer than the {_duration_text(max_seconds)} allowed; trim it first"
        )
    return WavAudio(
        samples=_decode(data, fmt),
        rate=fmt.rate,
        channels=fmt.channels,
        sample_width_bits=fmt.bits,
        format="pcm" if fmt.code == _FORMAT_PCM else "float",
    )


def _duration_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} s"


def read_wav_as_pcm16(
    path: str | os.PathLike[str],
    rate: int = 16000,
    *,
    max_seconds: float = MAX_QUESTION_SECONDS,
) -> bytes:
    """Any supported WAV -> mono (channels averaged) -> ``rate`` Hz -> s16le bytes, ready to stream.

    At most `max_seconds` of audio; a rate whose ratio to ``rate`` would need a huge filter is refused.
    """
    audio = read_wav(path, max_seconds=max_seconds)
    common = math.gcd(audio.rate, rate)
    if max(audio.rate, rate) // common > _MAX_RATIO_TERM:
        raise WavError(
            f"{os.fspath(path)}: sample rate {audio.rate} Hz is unusual and too costly to convert here; "
            f"convert it first, e.g. with `sox in.wav -r {rate} out.wav`"
        )
    mono = select_or_mix_channels(audio.samples, None)
    return float_to_pcm16(resample(mono, audio.rate, rate))


def write_wav(path: str | os.PathLike[str], pcm16: bytes, rate: int, channels: int = 1) -> None:
    """Write s16le interleaved bytes as a 16-bit PCM WAV, atomically (temp file in the same dir + os.replace).

    A new file gets mode 0644; an existing file keeps its mode.
    """
    target = Path(path)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"rate must be a positive integer sample rate in Hz, got {rate!r}")
    channels, rate = int(channels), int(rate)
    frame_bytes = 2 * channels
    if len(pcm16) % frame_bytes:
        raise ValueError(
            f"PCM16 data for {channels} channel(s) must be a multiple of {frame_bytes} bytes, got {len(pcm16)}"
        )
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            with wave.open(handle, "wb") as writer:
                writer.setnchannels(channels)
                writer.setsampwidth(2)
                writer.setframerate(rate)
                writer.writeframes(pcm16)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
