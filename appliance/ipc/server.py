"""The server end of the control socket: a Unix socket speaking newline-delimited JSON.

`appliance ctl press` has to behave exactly like the physical button, so the socket
only carries requests to the daemon's own handler; this module owns the transport and
the request shape, never the device state. A person can also talk to it with
`socat - UNIX-CONNECT:control.sock`.

The server is deliberately hard to break from the outside: malformed lines (not UTF-8,
not JSON, nested too deeply, the wrong shape) get an error reply and the connection stays
usable; every request has a total deadline that a slow trickle of bytes cannot stretch;
when all slots are taken the client idle longest makes room for the newcomer; and a
handler that raises produces an error reply instead of taking the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.hw.night import OVERRIDES as NIGHT_MODES
from appliance.ipc.client import PROBE_TIMEOUT_S, something_listens
from appliance.ipc.wire import (
    KNOWN_COMMANDS,
    MAX_REQUEST_BYTES,
    CommandError,
    ControlError,
    Reply,
    encode_line,
    is_int,
    one_line,
)

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # from connecting (or the last reply) until the next request line is complete
LINE_TIMEOUT_S = 5.0  # from a request line's first byte to its newline; also for taking a reply
MAX_CLIENTS = 16
SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o750
_READ_CHUNK = 64 * 1024
_TOO_DEEP = "request is nested too deeply; send one flat JSON object per line such as {\"cmd\": \"status\"}"

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def error_reply(message: str) -> Reply:
    return {"ok": False, "error": one_line(message)}


# ---------------------------------------------------------------------------------------------
# Request validation (the client builds requests that pass it)
# ---------------------------------------------------------------------------------------------

_EXAMPLE = '{"cmd": "status"}'
_NIGHT_EXAMPLE = '{"cmd": "night", "mode": "auto"}'
_MUTE_EXAMPLE = '{"cmd": "mute", "muted": true}'


def validate_request(request: Any) -> tuple[str, dict[str, Any]]:
    """Check the shape of one decoded request; returns (cmd, args) or raises CommandError."""
    if not isinstance(request, dict):
        raise CommandError(f"a request must be a JSON object such as {_EXAMPLE}")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise CommandError(f'a request needs "cmd", one of: {", ".join(KNOWN_COMMANDS)}')
    if cmd not in KNOWN_COMMANDS:
        raise CommandError(f"unknown command {cmd!r}; known commands: {', '.join(KNOWN_COMMANDS)}")
    args = {key: value for key, value in request.items() if key != "cmd"}
    if cmd == "volume":
        _validate_volume(args)
    elif cmd == "night":
        _validate_night(args)
    elif cmd == "mute":
        _validate_mute(args)
    elif cmd == "say":
        _validate_say(args)
    elif args:
        raise CommandError(f"{cmd!r} takes no arguments (got: {', '.join(sorted(map(str, args)))})")
    return cmd, args


def _validate_volume(args: dict[str, Any]) -> None:
    extra = sorted(set(args) - {"value", "delta"})
    if extra:
        raise CommandError(f"'volume' takes \"value\" (0-100) or \"delta\" (-100..100), not: {', '.join(extra)}")
    if ("value" in args) == ("delta" in args):
        raise CommandError("'volume' needs exactly one of \"value\" (0-100) or \"delta\" (-100..100)")
    if "value" in args and not (is_int(args["value"]) and 0 <= args["value"] <= 100):
        raise CommandError(f"volume \"value\" must be a whole number 0-100, got {args['value']!r}")
    if "delta" in args and not (is_int(args["delta"]) and -100 <= args["delta"] <= 100):
        raise CommandError(f"volume \"delta\" must be a whole number -100..100, got {args['delta']!r}")


def _validate_night(args: dict[str, Any]) -> None:
    modes = ", ".join(NIGHT_MODES)
    extra = sorted(set(args) - {"mode"})
    if extra:
        raise CommandError(f"'night' takes only \"mode\" ({modes}), not: {', '.join(extra)}; send {_NIGHT_EXAMPLE}")
    if "mode" not in args:
        raise CommandError(f"'night' needs \"mode\", one of {modes}; send {_NIGHT_EXAMPLE}")
    if args["mode"] not in NIGHT_MODES:
        raise CommandError(f"night \"mode\" must be one of {modes}, got {args['mode']!r}; send {_NIGHT_EXAMPLE}")


def _validate_mute(args: dict[str, Any]) -> None:
    extra = sorted(set(args) - {"muted"})
    if extra:
        raise CommandError(
            f"'mute' takes only \"muted\" (true or false), not: {', '.join(extra)}; send {_MUTE_EXAMPLE}")
    if "muted" not in args:
        raise CommandError(f"'mute' needs \"muted\", true or false; send {_MUTE_EXAMPLE}")
    if not isinstance(args["muted"], bool):
        raise CommandError(f"mute \"muted\" must be true or false, got {args['muted']!r}; send {_MUTE_EXAMPLE}")


def _validate_say(args: dict[str, Any]) -> None:
    if set(args) != {"text"} or not isinstance(args["text"], str):
        raise CommandError('\'say\' takes only "text", the sentence to speak; send {"cmd": "say", "text": "Dinner is ready"}')


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class _Overlong:
    """Marker for a request line that exceeded MAX_REQUEST_BYTES (its bytes were dropped)."""


class _Unfinished:
    """Marker for a request line that was started but not finished before its deadline."""


_OVERLONG = _Overlong()
_UNFINISHED = _Unfinished()


@dataclass
class _LineReader:
    """Splits a stream into lines, dropping over-long lines instead of buffering them.

    asyncio's own readline leaves the tail of an over-long line behind as a bogus next
    request; this keeps exactly one reply per line the client sent. Deadlines are totals,
    not per read: a client that trickles one byte at a time cannot stretch them.
    """

    reader: asyncio.StreamReader
    line_timeout: float
    max_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        self._pending = bytearray()
        self._discarding = False
        self._line_started: float | None = None  # loop time of the first byte of the current line
        self._last_chunk_at = 0.0

    async def next_line(self, idle_deadline: float) -> bytes | _Overlong | _Unfinished | None:
        """The next line without its newline; _OVERLONG; _UNFINISHED; or None at end of stream.

        The line must be complete by `idle_deadline` (loop time) and within `line_timeout` of
        its first byte. None also means the deadline passed before the line had begun.
        """
        loop = asyncio.get_running_loop()
        while True:
            newline = self._pending.find(b"\n")
            if newline >= 0:
                line = bytes(self._pending[:newline])
                del self._pending[: newline + 1]
                self._line_started = self._last_chunk_at if self._pending else None
                if self._discarding:
                    self._discarding = False
                    continue
                return _OVERLONG if len(line) > self.max_bytes else line
            if self._discarding:
                self._pending.clear()
            elif len(self._pending) > self.max_bytes:
                self._pending.clear()
                self._discarding = True
                return _OVERLONG
            deadline = idle_deadline
            if self._line_started is not None:
                deadline = min(deadline, self._line_started + self.line_timeout)
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await self.reader.read(_READ_CHUNK)
            except TimeoutError:
                # an over-long line already had its reply; any other started line gets one now
                return _UNFINISHED if self._line_started is not None and not self._discarding else None
            if not chunk:
                if self._pending and not self._discarding:
                    line = bytes(self._pending)  # a last request without its newline still counts
                    self._pending.clear()
                    return line
                return None
            self._last_chunk_at = loop.time()
            if self._line_started is None:
                self._line_started = self._last_chunk_at
            self._pending += chunk


@dataclass(eq=False)
class _Client:
    """One connection's slot: whether a request is being answered, and since when it waits for one."""

    task: asyncio.Task[Any]
    writer: asyncio.StreamWriter
    waiting_since: float
    busy: bool = False
    dismissed: bool = False  # the server itself cancelled it (to make room, or on close)


class ControlServer:
    """Serves the control socket; `handler(cmd, args)` does the work and returns the reply fields.

    The handler may return `{"ok": False, "error": ...}` or raise CommandError to refuse a
    request; any other exception is logged and turned into an error reply.

    Every client has deadlines that no trickle of bytes can stretch: its next request line
    must be complete within `idle_timeout` of connecting (or of its last reply) and within
    `line_timeout` of the line's first byte, and it must take its reply within `line_timeout`.
    When `max_clients` are connected, a newcomer takes the slot of the client that has waited
    longest without a request in progress; it is refused only while every slot is busy.
    """

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT_S,
        line_timeout: float = LINE_TIMEOUT_S,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.path = Path(path)
        self._handler = handler
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout
        self._line_timeout = line_timeout
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[Any], _Client] = {}
        self._socket_identity: tuple[int, int] | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        """Bind the socket; raises ControlError with one line when that is not possible."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        self._ensure_directory()
        await self._clear_stale_socket()
        sock = self._bind_socket()
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, sock=sock)
        except BaseException:
            sock.close()
            self._unlink_own_socket()
            raise
        log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, end every client connection, remove our socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        clients = list(self._clients)
        for task, client in self._clients.items():
            client.dismissed = True
            task.cancel()
        if clients:
            await asyncio.gather(*clients, return_exceptions=True)
        await server.wait_closed()
        self._unlink_own_socket()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- setup ---------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            return  # not ours to re-permission (it may be systemd's RuntimeDirectory or /tmp)
        try:
            directory.mkdir(mode=DIRECTORY_MODE, parents=True)
            os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            if not directory.is_dir():
                raise ControlError(f"cannot create the control socket directory {directory}: a file is in the way")
        except OSError as exc:
            raise ControlError(
                f"cannot create the control socket directory {directory}: {exc.strerror or exc}"
            ) from None

    async def _clear_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"cannot inspect {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISSOCK(mode):
            raise ControlError(
                f"{self.path} exists and is not a socket; remove it or set [control] socket to another path"
            )
        if await something_listens(self.path):
            raise ControlError(
                f"another appliance daemon is already listening on {self.path}; stop it first "
                "or set [control] socket to another path"
            )
        log.info("removing stale control socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _bind_socket(self) -> socket.socket:
        """Bind and set the mode before listening, so there is no moment with the umask's mode."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            reason = exc.strerror or str(exc)
            if len(os.fsencode(self.path)) >= 108:
                reason = "the path is too long for a Unix socket (at most 107 bytes)"
            raise ControlError(f"cannot create the control socket {self.path}: {reason}") from None
        try:
            os.chmod(self.path, SOCKET_MODE)
            st = os.stat(self.path)
        except OSError as exc:
            sock.close()
            self._unlink_path_quietly()
            raise ControlError(f"cannot set the mode of {self.path}: {exc.strerror or exc}") from None
        self._socket_identity = (st.st_dev, st.st_ino)
        return sock

    def _unlink_own_socket(self) -> None:
        """Remove the socket file only if it is still the one we bound (a successor may own the path)."""
        identity, self._socket_identity = self._socket_identity, None
        if identity is None:
            return
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == identity:
            self._unlink_path_quietly()

    def _unlink_path_quietly(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the control socket %s: %s", self.path, exc.strerror or exc)

    # -- connections ---------------------------------------------------------------------------

    def _make_room(self) -> bool:
        """Free a slot by closing the client that has waited longest for its next request.

        A client whose request is being answered is never chosen; False when all are busy.
        """
        idle = [client for client in self._clients.values() if not client.busy]
        if not idle:
            return False
        victim = min(idle, key=lambda client: client.waiting_since)
        del self._clients[victim.task]
        victim.dismissed = True
        log.info("control socket: %d clients connected; closing the one idle longest for a new one",
                 self._max_clients)
        with contextlib.suppress(Exception):  # the notice is a courtesy; the transport may be gone
            victim.writer.write(encode_line(error_reply(
                "closed: the control socket is full and this connection was idle; reconnect to send a request"
            )))
        victim.task.cancel()
        return True

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if len(self._clients) >= self._max_clients and not self._make_room():
            log.warning("control socket: refusing a client, all %d connected clients are busy", len(self._clients))
            await self._reply_and_close(
                writer, error_reply(f"too many control clients ({self._max_clients} busy); try again later")
            )
            return
        task = asyncio.current_task()
        assert task is not None
        client = _Client(task, writer, waiting_since=loop.time())
        self._clients[task] = client
        try:
            lines = _LineReader(reader, self._line_timeout)
            while True:
                line = await lines.next_line(client.waiting_since + self._idle_timeout)
                if line is None:
                    break
                client.busy = True
                reply = await self._answer(line)
                writer.write(encode_line(reply))
                async with asyncio.timeout(self._line_timeout):
                    await writer.drain()
                if isinstance(line, _Unfinished):
                    break
                client.busy = False
                client.waiting_since = loop.time()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading its replies
        except asyncio.CancelledError:
            # Our own cancellation ends the connection normally: on Python 3.11 a server task
            # that ends cancelled makes asyncio log a spurious "Exception in callback".
            if not client.dismissed:
                raise
        finally:
            if self._clients.get(task) is client:
                del self._clients[task]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reply_and_close(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        try:
            writer.write(encode_line(reply))
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes | _Overlong | _Unfinished) -> Reply:
        if isinstance(line, _Overlong):
            return error_reply(f"request longer than {MAX_REQUEST_BYTES} bytes; send one short JSON object per line")
        if isinstance(line, _Unfinished):
            return error_reply(
                f"request line not finished within {self._line_timeout:g} s; send one whole line at a time"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return error_reply(f"request is not UTF-8 text; send one JSON object per line such as {_EXAMPLE}")
        try:
            request = json.loads(text)
        except RecursionError:
            return error_reply(_TOO_DEEP)
        except ValueError:
            return error_reply(f"request is not JSON; send one object per line such as {_EXAMPLE}")
        try:
            cmd, args = validate_request(request)
        except CommandError as exc:
            return error_reply(str(exc))
        except RecursionError:  # rendering a deeply nested value for the error message
            return error_reply(_TOO_DEEP)
        return await self._call_handler(cmd, args)

    async def _call_handler(self, cmd: str, args: dict[str, Any]) -> Reply:
        try:
            result = await self._handler(cmd, args)
        except CommandError as exc:
            log.info("control: %s refused: %s", cmd, one_line(str(exc)))
            return error_reply(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("control: the %s handler failed", cmd)
            return error_reply(f"{cmd} failed inside the daemon: {type(exc).__name__}: {exc}")
        if not isinstance(result, dict):
            log.error("control: the %s handler returned %s instead of a dict", cmd, type(result).__name__)
            return error_reply(f"{cmd} failed inside the daemon: the handler returned no reply")
        reply: Reply = {"ok": True, **result}
        if reply["ok"] is not True:
            reply["ok"] = False
            reply["error"] = one_line(str(reply.get("error") or f"{cmd} failed"))
        try:
            encode_line(reply)
        except (TypeError, ValueError) as exc:
            log.error("control: the %s reply cannot be sent as JSON: %s", cmd, exc)
            return error_reply(f"{cmd} failed inside the daemon: its reply is not JSON")
        return reply


