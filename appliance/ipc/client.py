"""The client end of the control socket: one request, one reply, within a deadline.

`request_sync` is the one implementation: a plain blocking socket, so `appliance ctl`
starts without asyncio.  The tests, the soak and the bench await `request`, which runs
it in a worker thread.  The server uses `something_listens` to tell a live daemon's
socket from a stale file.  asyncio is imported only inside the async functions.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from appliance.ipc.wire import MAX_REQUEST_BYTES, ControlError, Reply, encode_line

REQUEST_TIMEOUT_S = 10.0
#: how long a probe (or a parting error reply) may take before the other end counts as slow
PROBE_TIMEOUT_S = 1.0
#: the longest reply line read, newline included; a longer one is refused, not buffered
MAX_REPLY_BYTES = MAX_REQUEST_BYTES * 4
_RECV_CHUNK = 64 * 1024


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket (no file, or a stale one)."""


class _ReplyTooLong(Exception):
    """The reply line passed MAX_REPLY_BYTES without a newline."""


def request_sync(path: Path, cmd: str, /, *, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Reply:
    """Send one request and return the daemon's reply (which may have ok=False).

    Raises DaemonNotRunning when nothing is listening, ControlError for every other failure
    to get a well-formed reply.  Connecting may take `timeout`, and so may sending the
    request and reading the reply together.
    """
    path = Path(path)
    message = encode_line({"cmd": cmd, **args})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _connect(sock, path, timeout)
        deadline = time.monotonic() + timeout
        try:
            sock.sendall(message)
            line = _read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(f"the daemon did not answer {cmd!r} within {timeout:g} s") from None
        except _ReplyTooLong:
            raise ControlError(f"the daemon's reply to {cmd!r} is longer than {MAX_REPLY_BYTES} bytes") from None
        except OSError as exc:
            raise ControlError(f"the connection to {path} failed during {cmd!r}: {exc}") from None
    return decode_reply(line, cmd)


async def request(path: Path, cmd: str, /, *, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Reply:
    """`request_sync` in a worker thread, so the caller's loop (often the server's) keeps running.

    A cancelled caller stops waiting at once; the thread itself ends within `timeout`.
    """
    import asyncio

    return await asyncio.to_thread(request_sync, path, cmd, timeout=timeout, **args)


def _connect(sock: socket.socket, path: Path, timeout: float) -> None:
    """Connect, turning each way it can fail into the one line `ctl` prints."""
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except FileNotFoundError:
        raise DaemonNotRunning(f"the appliance daemon is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"the appliance daemon is not running (nothing listens on {path})") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}; run as the daemon's user or join its group") from None
    except TimeoutError:
        raise ControlError(f"the daemon did not accept a connection on {path} within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    """Bytes up to and including the first newline (or up to EOF), all before `deadline`."""
    data = bytearray()
    while len(data) < MAX_REPLY_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(min(_RECV_CHUNK, MAX_REPLY_BYTES - len(data)))
        if not chunk:
            return bytes(data)
        end = chunk.find(b"\n")
        if end >= 0:
            return bytes(data + chunk[: end + 1])
        data += chunk
    raise _ReplyTooLong


def decode_reply(line: bytes, cmd: str) -> Reply:
    """Check a reply line: a JSON object with a boolean `ok`, else one ControlError line."""
    if not line:
        raise ControlError(f"the daemon closed the connection without answering {cmd!r}")
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ControlError(f"the daemon's reply to {cmd!r} is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"the daemon's reply to {cmd!r} has no ok field")
    return reply


async def something_listens(path: Path) -> bool:
    """True when a live server accepts on `path`; a refused connection means a stale file."""
    import asyncio
    import contextlib

    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), PROBE_TIMEOUT_S)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except asyncio.TimeoutError:
        return True  # something holds it but is slow: do not pull the floor from under it
    except OSError as exc:
        raise ControlError(f"cannot check whether {path} is in use: {exc.strerror or exc}") from None
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
