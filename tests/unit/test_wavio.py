"""WAV reading for every common sample format, clear errors, and atomic 16-bit writing."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.wavio import WavError, read_wav, read_wav_as_pcm16, write_wav

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# One frame per row, three channels so that interleaving mistakes show up.
REFERENCE = np.array(
    [[0.0, 0.5, -0.5], [-1.0, 0.25, 0.75], [0.125, -0.25, 0.0], [0.5, 0.0, -1.0]],
    dtype=np.float64,
)


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk, with the pad byte that odd sizes require."""
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_chunk(code: int, channels: int, rate: int, bits: int, *, extensible_code: int | None = None) -> bytes:
    block_align = channels * bits // 8
    body = struct.pack("<HHIIHH", code, channels, rate, rate * block_align, block_align, bits)
    if extensible_code is not None:
        guid = struct.pack("<H", extensible_code) + GUID_TAIL
        body += struct.pack("<HHI", 22, bits, 0) + guid
    return chunk(b"fmt ", body)


def riff(*chunks: bytes) -> bytes:
    payload = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def encode(samples: np.ndarray, code: int, bits: int) -> bytes:
    """Interleaved sample bytes, built by hand (not via the module under test)."""
    flat = samples.reshape(-1)
    if code == FLOAT:
        return flat.astype("<f4" if bits == 32 else "<f8").tobytes()
    if bits == 8:
        return np.clip(np.round(flat * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    full_scale = 2 ** (bits - 1)
    ints = np.clip(np.round(flat * full_scale), -full_scale, full_scale - 1).astype(np.int64)
    if bits == 24:
        return b"".join(struct.pack("<i", int(v))[:3] for v in ints)
    return ints.astype("<i2" if bits == 16 else "<i4").tobytes()


def write_bytes(tmp_path: Path, name: str, blob: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize(
    ("code", "bits", "extensible", "expected_format", "tolerance"),
    [
        (PCM, 8, False, "pcm", 1 / 128),
        (PCM, 16, False, "pcm", 1 / 32768),
        (PCM, 24, False, "pcm", 2**-23),
        (PCM, 32, False, "pcm", 1e-7),
        (FLOAT, 32, False, "float", 0.0),
        (FLOAT, 64, False, "float", 0.0),
        (PCM, 16, True, "pcm", 1 / 32768),
        (PCM, 24, True, "pcm", 2**-23),
        (PCM, 32, True, "pcm", 1e-7),
        (FLOAT, 32, True, "float", 0.0),
        (FLOAT, 64, True, "float", 0.0),
    ],
)
def test_reads_every_supported_format(
    tmp_path: Path, code: int, bits: int, extensible: bool, expected_format: str, tolerance: float
) -> None:
    fmt = (
        fmt_chunk(EXTENSIBLE, 3, 22050, bits, extensible_code=code)
        if extensible
        else fmt_chunk(code, 3, 22050, bits)
    )
    blob = riff(
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00odd!!"),  # odd-sized unknown chunk before fmt: pad byte follows
        fmt,
        chunk(b"junk", b"abc"),
        chunk(b"data", encode(REFERENCE, code, bits)),
        chunk(b"cue ", b"\x00" * 5),
    )
    audio = read_wav(write_bytes(tmp_path, "x.wav", blob))
    assert (audio.rate, audio.channels, audio.sample_width_bits, audio.format) == (22050, 3, bits, expected_format)
    assert audio.samples.dtype == np.float32 and audio.samples.shape == REFERENCE.shape
    np.testing.assert_allclose(audio.samples, REFERENCE, atol=tolerance + 1e-9)
    assert audio.frames == 4 and audio.duration_s == pytest.approx(4 / 22050)


def test_float_samples_outside_full_scale_are_clipped(tmp_path: Path) -> None:
    data = np.array([[1.5], [-2.0], [np.nan], [0.25]])
    blob = riff(fmt_chunk(FLOAT, 1, 8000, 32), chunk(b"data", encode(data, FLOAT, 32)))
    audio = read_wav(write_bytes(tmp_path, "hot.wav", blob))
    np.testing.assert_array_equal(audio.samples[:, 0], [1.0, -1.0, 0.0, 0.25])


def test_odd_sized_data_chunk_is_followed_by_its_pad_byte(tmp_path: Path) -> None:
    data = np.array([[0.5], [-0.5], [0.25]])
    blob = riff(fmt_chunk(PCM, 1, 8000, 8), chunk(b"data", encode(data, PCM, 8)), chunk(b"LIST", b"tail"))
    audio = read_wav(write_bytes(tmp_path, "odd.wav", blob))
    np.testing.assert_allclose(audio.samples[:, 0], [0.5, -0.5, 0.25])


def test_data_before_fmt_is_accepted(tmp_path: Path) -> None:
    data = np.array([[0.5, -0.5]])
    blob = riff(chunk(b"data", encode(data, PCM, 16)), fmt_chunk(PCM, 2, 16000, 16))
    np.testing.assert_allclose(read_wav(write_bytes(tmp_path, "late.wav", blob)).samples, data)


# ------------------------------------------------------------------------------------------------ errors

GOOD_FMT = fmt_chunk(PCM, 1, 16000, 16)
GOOD_DATA = chunk(b"data", b"\x00\x00" * 4)


@pytest.mark.parametrize(
    ("name", "blob", "problem"),
    [
        ("notes.wav", b"this is a text file, not audio\n", "not a WAV file"),
        ("empty.wav", b"", "not a WAV file"),
        ("truncated.wav", riff(GOOD_FMT, chunk(b"data", b"\x00\x00" * 100))[:-50], "truncated"),
        ("adpcm.wav", riff(fmt_chunk(2, 1, 16000, 4), GOOD_DATA), "unsupported format code 2"),
        ("nodata.wav", riff(GOOD_FMT, chunk(b"LIST", b"INFO")), "no data chunk"),
        ("nofmt.wav", riff(GOOD_DATA), "no fmt chunk"),
        ("zero.wav", riff(fmt_chunk(PCM, 0, 16000, 16), GOOD_DATA), "zero channels"),
        ("norate.wav", riff(fmt_chunk(PCM, 1, 0, 16), GOOD_DATA), "sample rate 0 Hz is outside 8000..192000 Hz"),
        ("12bit.wav", riff(fmt_chunk(PCM, 1, 16000, 12), GOOD_DATA), "unsupported PCM sample width 12"),
        ("f16.wav", riff(fmt_chunk(FLOAT, 1, 16000, 16), GOOD_DATA), "unsupported float sample width 16"),
        ("ext.wav", riff(fmt_chunk(EXTENSIBLE, 1, 16000, 16, extensible_code=0x55), GOOD_DATA), "format code 85"),
        ("shortfmt.wav", riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), GOOD_DATA), "fmt chunk is only 4 bytes"),
        ("be.wav", b"RIFX" + riff(GOOD_FMT, GOOD_DATA)[4:], "RIFX files are not supported"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, name: str, blob: bytes, problem: str) -> None:
    path = write_bytes(tmp_path, name, blob)
    with pytest.raises(WavError) as info:
        read_wav(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert problem in message


def test_extensible_with_foreign_guid_is_rejected(tmp_path: Path) -> None:
    fmt = bytearray(fmt_chunk(EXTENSIBLE, 1, 16000, 16, extensible_code=PCM))
    fmt[-1] ^= 0xFF  # corrupt the GUID tail
    path = write_bytes(tmp_path, "guid.wav", riff(bytes(fmt), GOOD_DATA))
    with pytest.raises(WavError, match="subformat GUID"):
        read_wav(path)


def test_missing_file_is_a_wav_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(WavError, match="nope.wav: cannot read file"):
        read_wav(missing)


# ------------------------------------------------------------------------------------------------ conversion


def test_stereo_float_44k1_tone_becomes_16k_mono_pcm16(tmp_path: Path) -> None:
    rate, seconds = 44100, 0.5
    t = np.arange(int(rate * seconds)) / rate
    left = 0.6 * np.sin(2 * np.pi * 440 * t)
    right = 0.2 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, right], axis=1)
    blob = riff(fmt_chunk(FLOAT, 2, rate, 32), chunk(b"data", encode(stereo, FLOAT, 32)))
    path = write_bytes(tmp_path, "tone.wav", blob)

    pcm = read_wav_as_pcm16(path, rate=16000)
    out = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert out.size == round(t.size * 16000 / rate)
    middle = out[800:-800]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    assert np.argmax(spectrum) * 16000 / middle.size == pytest.approx(440, abs=16000 / middle.size)
    tt = np.arange(out.size) / 16000
    expected = 0.4 * 32768 * np.sin(2 * np.pi * 440 * tt)  # mono = average of the two channels
    assert np.max(np.abs(out - expected)[800:-800]) < 3  # within rounding: right frequency, phase and level


def test_read_wav_as_pcm16_at_native_rate_is_lossless(tmp_path: Path) -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")
    path = tmp_path / "native.wav"
    write_wav(path, samples.tobytes(), 16000)
    assert read_wav_as_pcm16(path, rate=16000) == samples.tobytes()


# ------------------------------------------------------------------------------------------------ writing


def test_write_wav_round_trip(tmp_path: Path) -> None:
    stereo = np.array([[100, -100], [32767, -32768], [0, 5]], dtype="<i2")
    path = tmp_path / "out.wav"
    write_wav(path, stereo.tobytes(), 24000, channels=2)
    with wave.open(str(path), "rb") as reader:  # readable by the standard library as plain 16-bit PCM
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 24000)
        assert reader.readframes(10) == stereo.tobytes()
    audio = read_wav(path)
    assert (audio.rate, audio.channels, audio.sample_width_bits, audio.format) == (24000, 2, 16, "pcm")
    np.testing.assert_array_equal(np.rint(audio.samples * 32768).astype(np.int16), stereo)
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_wav_replaces_existing_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "reply.wav"
    write_wav(path, b"\x01\x00" * 1000, 16000)
    path.chmod(0o600)
    write_wav(path, b"\x02\x00" * 10, 16000)
    assert read_wav(path).frames == 10
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["reply.wav"]


def test_write_wav_rejects_partial_frames_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.wav"
    write_wav(path, b"\x01\x00" * 4, 16000)
    with pytest.raises(ValueError, match="multiple of 4 bytes"):
        write_wav(path, b"\x00" * 6, 16000, channels=2)
    with pytest.raises(ValueError, match="sample rate"):
        write_wav(path, b"\x00\x00", 0)
    assert read_wav(path).frames == 4
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]
