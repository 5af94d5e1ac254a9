"""Files that a power cut cannot leave half-written, and files read back without trusting them.

A kitchen appliance gets unplugged mid-write.  Everything it keeps (volume, timers)
is written to a temporary file in the same directory, flushed to the card, and
renamed over the old one, then the directory itself is synced so the rename
survives too: after a crash there is the old file or the new one, never half.

Reading goes the other way: whatever sits at a path (a config, a key file, a WAV, a
state file) may be a FIFO that never answers, a device that never ends, or a huge
file.  `read_regular_file` reads regular files only, up to a stated size.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["FileRefused", "fsync_dir", "read_regular_file", "size_text", "write_atomic"]


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` in one step; `mode` sets the new file's permissions.

    A `str` is encoded as strict UTF-8 before anything is written, so text that cannot
    be stored (a lone surrogate) raises UnicodeEncodeError and the old file stays.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here, not at the top: `appliance ctl` reads files and never writes one

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FileRefused(Exception):
    """A path that is not a regular file, or a file over the size limit.

    `problem` completes a sentence that starts with the file's name, e.g.
    "is a FIFO, not a regular file".
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a plain file"


def size_text(size: int) -> str:
    """Bytes as the unit a person would say: 256 KiB, 64 MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _refuse_kind(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise FileRefused(f"is {_kind(mode)}, not a regular file")


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes.

    Why so careful: opening a FIFO blocks until a writer comes, reading /dev/zero never
    ends, and opening some devices does something (a watchdog starts counting).  So the
    type is checked with stat() before the file is opened, the open never blocks, the type
    is checked again on the open file (the path may have been swapped), and no more than
    `max_bytes + 1` bytes are ever read.  Raises FileRefused for the wrong type or size,
    OSError when the file cannot be opened or read.
    """
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # a NUL byte in the name: no file can have it
        raise FileRefused("is not a usable file name (it holds a NUL byte)") from None
    _refuse_kind(mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        _refuse_kind(info.st_mode)
        too_big = FileRefused(f"is larger than {size_text(max_bytes)}")
        if info.st_size > max_bytes:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:  # it grew while we read
            raise too_big
        return b"".join(chunks)
    finally:
        os.close(fd)
