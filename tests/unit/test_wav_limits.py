"""WAV files that lie in their header or are not files at all: refused in one line, without big allocations."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.wavio import (
    MAX_QUESTION_SECONDS,
    MAX_WAV_BYTES,
    WavError,
    read_wav,
    read_wav_as_pcm16,
)


def wav_bytes(rate: int, data: bytes, *, channels: int = 1, bits: int = 16, data_size: int | None = None) -> bytes:
    """A PCM WAV with whatever header values the test wants, including impossible ones."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


def write(tmp_path: Path, blob: bytes, name: str = "q.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def error_line(excinfo: pytest.ExceptionInfo[WavError], path: Path | str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("rate", [1, 3, 7999, 192001, 2**32 - 1])
def test_a_rate_outside_8_to_192_khz_is_refused(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path, wav_bytes(rate, b"\x00\x00" * 100))
    with pytest.raises(WavError) as info:
        read_wav_as_pcm16(path, 16000)
    assert f"sample rate {rate} Hz is outside 8000..192000 Hz" in error_line(info, path)


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 192000])
def test_rates_at_and_inside_the_limits_convert(tmp_path: Path, rate: int) -> None:
    samples = (np.sin(np.arange(rate // 10) * 0.05) * 8000).astype("<i2")
    path = write(tmp_path, wav_bytes(rate, samples.tobytes()))
    pcm = read_wav_as_pcm16(path, 16000)
    assert abs(len(pcm) // 2 - 1600) <= 1  # 0.1 s at 16 kHz


def test_an_odd_rate_that_would_need_a_huge_filter_is_refused_for_conversion(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(96001, b"\x00\x00" * 1000))
    assert read_wav(path).rate == 96001  # readable as it is
    with pytest.raises(WavError) as info:
        read_wav_as_pcm16(path, 16000)
    message = error_line(info, path)
    assert "96001 Hz is unusual" in message and "sox in.wav -r 16000 out.wav" in message


def test_a_question_longer_than_five_minutes_is_refused(tmp_path: Path) -> None:
    assert MAX_QUESTION_SECONDS == 300
    frames = 8000 * 301
    path = write(tmp_path, wav_bytes(8000, b"\x80" * frames, bits=8))
    with pytest.raises(WavError) as info:
        read_wav_as_pcm16(path, 16000)
    assert "301 s of audio is longer than the 5 minutes allowed" in error_line(info, path)
    assert read_wav(path).frames == frames  # the plain reader has no duration limit unless asked


def test_exactly_five_minutes_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(8000, b"\x80" * (8000 * 300), bits=8))
    assert len(read_wav_as_pcm16(path, 8000)) == 2 * 8000 * 300


def test_a_file_over_the_size_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(16000, b"", data_size=1 << 30))
    with open(path, "r+b") as handle:
        handle.truncate(1 << 30)  # a sparse 1 GiB file: nothing is really written
    with pytest.raises(WavError) as info:
        read_wav(path)
    assert "is larger than 64 MiB" in error_line(info, path)
    assert MAX_WAV_BYTES == 64 * 1024 * 1024


def test_a_header_claiming_4_gib_of_data_is_a_truncation_error(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(16000, b"\x00\x00" * 10, data_size=0xFFFFFFFE))
    with pytest.raises(WavError) as info:
        read_wav(path)
    assert "truncated: data chunk declares 4294967294 bytes" in error_line(info, path)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "q.wav"
    os.mkfifo(fifo)
    with pytest.raises(WavError) as info:
        read_wav(fifo)
    assert error_line(info, fifo) == f"{fifo}: is a FIFO, not a regular file"


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_is_refused(path: str) -> None:
    with pytest.raises(WavError) as info:
        read_wav(path)
    assert error_line(info, path) == f"{path}: is a character device, not a regular file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WavError) as info:
        read_wav(tmp_path)
    assert "is a directory, not a regular file" in error_line(info, tmp_path)


def test_thousands_of_empty_chunks_before_the_audio_are_refused(tmp_path: Path) -> None:
    junk = (b"junk" + struct.pack("<I", 0)) * 20000
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + junk + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 2) + b"\x00\x00"
    path = write(tmp_path, b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(WavError) as info:
        read_wav(path)
    assert "more than 10000 chunks" in error_line(info, path)
