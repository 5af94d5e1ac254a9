"""The client end of the control socket: one request, one reply, within a deadline.

`appliance ctl`, the tests and the soak use `request`; the server uses
`something_listens` to tell a live daemon's socket from a stale file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from appliance.ipc.wire import MAX_REQUEST_BYTES, ControlError, Reply, encode_line

REQUEST_TIMEOUT_S = 10.0
#: how long a probe (or a parting error reply) may take before the other end counts as slow
PROBE_TIMEOUT_S = 1.0


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket (no file, or a stale one)."""


async def request(path: Path, cmd: str, /, *, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Reply:
    """Send one request and return the daemon's reply (which may have ok=False).

    Raises DaemonNotRunning when nothing is listening, ControlError for every other failure
    to get a well-formed reply.
    """
    path = Path(path)
    message = encode_line({"cmd": cmd, **args})
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_REQUEST_BYTES * 4), timeout
        )
    except FileNotFoundError:
        raise DaemonNotRunning(f"the appliance daemon is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"the appliance daemon is not running (nothing listens on {path})") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {path}; run as the daemon's user or join its group"
        ) from None
    except asyncio.TimeoutError:
        raise ControlError(f"the daemon did not accept a connection on {path} within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        writer.write(message)
        await asyncio.wait_for(writer.drain(), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        raise ControlError(f"the daemon did not answer {cmd!r} within {timeout:g} s") from None
    except (ConnectionError, ValueError) as exc:
        raise ControlError(f"the connection to {path} failed during {cmd!r}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise ControlError(f"the daemon closed the connection without answering {cmd!r}")
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError(f"the daemon's reply to {cmd!r} is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"the daemon's reply to {cmd!r} has no ok field")
    return reply


async def something_listens(path: Path) -> bool:
    """True when a live server accepts on `path`; a refused connection means a stale file."""
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
