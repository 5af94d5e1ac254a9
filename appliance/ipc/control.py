"""The local control channel: a Unix socket speaking newline-delimited JSON.

`appliance ctl press` has to behave exactly like the physical button, so the socket
only carries requests to the daemon's own handler; this module owns the transport and
the request shape, never the device state. One JSON object per line goes in, one JSON
object per line comes out (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`), so
a person can also talk to it with `socat - UNIX-CONNECT:control.sock`.

The server is deliberately hard to break from the outside: malformed lines (not UTF-8,
not JSON, nested too deeply, the wrong shape) get an error reply and the connection stays
usable; every request has a total deadline that a slow trickle of bytes cannot stretch;
when all slots are taken the client idle longest makes room for the newcomer; and a
handler that raises produces an error reply instead of taking the daemon down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from appliance.logsetup import escape_controls

log = logging.getLogger(__name__)

KNOWN_COMMANDS: tuple[str, ...] = (
    "status", "press", "release", "tap", "stop", "volume", "new-conversation", "timers",
)
MAX_REQUEST_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 60.0  # from connecting (or the last reply) until the next request line is complete
LINE_TIMEOUT_S = 5.0  # from a request line's first byte to its newline; also for taking a reply
MAX_CLIENTS = 16
REQUEST_TIMEOUT_S = 10.0
SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o750
_PROBE_TIMEOUT_S = 1.0
_READ_CHUNK = 64 * 1024
_MAX_ERROR_CHARS = 300
_TOO_DEEP = "request is nested too deeply; send one flat JSON object per line such as {\"cmd\": \"status\"}"

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Reply = dict[str, Any]


class ControlError(Exception):
    """The control socket could not be set up or used; the message is one line for a person."""


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket (no file, or a stale one)."""


class CommandError(Exception):
    """Raised by a handler to refuse a request; its text becomes the error reply as is."""


def one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """Error texts travel on a line-based protocol and end up in a terminal: one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_reply(message: str) -> Reply:
    return {"ok": False, "error": one_line(message)}


def _encode(reply: Reply) -> bytes:
    """One JSON line. A lone surrogate (from a client's own \\udXXX escape) cannot be UTF-8, so
    it goes out as a JSON \\u escape again instead of failing the whole reply."""
    text = json.dumps(reply, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace") + b"\n"


# ---------------------------------------------------------------------------------------------
# Request validation (shared by the server; the client builds requests that pass it)
# ---------------------------------------------------------------------------------------------

_EXAMPLE = '{"cmd": "status"}'


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    elif args:
        raise CommandError(f"{cmd!r} takes no arguments (got: {', '.join(sorted(map(str, args)))})")
    return cmd, args


def _validate_volume(args: dict[str, Any]) -> None:
    extra = sorted(set(args) - {"value", "delta"})
    if extra:
        raise CommandError(f"'volume' takes \"value\" (0-100) or \"delta\" (-100..100), not: {', '.join(extra)}")
    if ("value" in args) == ("delta" in args):
        raise CommandError("'volume' needs exactly one of \"value\" (0-100) or \"delta\" (-100..100)")
    if "value" in args and not (_is_int(args["value"]) and 0 <= args["value"] <= 100):
        raise CommandError(f"volume \"value\" must be a whole number 0-100, got {args['value']!r}")
    if "delta" in args and not (_is_int(args["delta"]) and -100 <= args["delta"] <= 100):
        raise CommandError(f"volume \"delta\" must be a whole number -100..100, got {args['delta']!r}")


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
        if await _something_listens(self.path):
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
            victim.writer.write(_encode(error_reply(
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
                writer.write(_encode(reply))
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
            writer.write(_encode(reply))
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
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
            _encode(reply)
        except (TypeError, ValueError) as exc:
            log.error("control: the %s reply cannot be sent as JSON: %s", cmd, exc)
            return error_reply(f"{cmd} failed inside the daemon: its reply is not JSON")
        return reply


async def _something_listens(path: Path) -> bool:
    """True when a live server accepts on `path`; a refused connection means a stale file."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), _PROBE_TIMEOUT_S)
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


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


async def request(path: Path, cmd: str, /, *, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Reply:
    """Send one request and return the daemon's reply (which may have ok=False).

    Raises DaemonNotRunning when nothing is listening, ControlError for every other failure
    to get a well-formed reply.
    """
    path = Path(path)
    message = _encode({"cmd": cmd, **args})
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


# ---------------------------------------------------------------------------------------------
# `appliance ctl`
# ---------------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_UNREACHABLE = 2
EXIT_USAGE = 2  # argparse's own code for a bad command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ctl` subcommand's own arguments; the caller supplies the default socket path."""
    parser.add_argument("ctl_command", metavar="COMMAND", choices=KNOWN_COMMANDS,
                        help=f"one of: {', '.join(KNOWN_COMMANDS)}")
    parser.add_argument("ctl_args", metavar="ARG", nargs="*",
                        help="volume takes N (0-100), or +N / -N to change it relative to now")
    parser.add_argument("--socket", dest="ctl_socket", type=Path, metavar="PATH",
                        help="control socket (default: from [control] socket)")
    parser.add_argument("--json", dest="ctl_json", action="store_true",
                        help="print the daemon's raw JSON reply")


def build_ctl_parser(prog: str = "appliance ctl") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Talk to the running appliance daemon.")
    add_arguments(parser)
    return parser


def ctl_main(argv: Sequence[str] | argparse.Namespace, socket_path: Path) -> int:
    """`appliance ctl ...`; `socket_path` is the configured default, `--socket` overrides it.

    Takes the words after `ctl`, or the namespace of a parser built with add_arguments.
    Exit codes: 0 ok, 1 error reply (or a garbled/late one), 2 daemon unreachable or bad usage.
    """
    if isinstance(argv, argparse.Namespace):
        return run_ctl(argv, socket_path)
    parser = build_ctl_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed the usage line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_ctl(args, socket_path)


def run_ctl(
    args: argparse.Namespace,
    socket_path: Path,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`appliance ctl` from already parsed arguments (for a parser built with add_arguments)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    cmd: str = args.ctl_command
    try:
        fields = command_fields(cmd, list(args.ctl_args))
    except CommandError as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_USAGE
    path = Path(args.ctl_socket) if args.ctl_socket else Path(socket_path)
    try:
        reply = asyncio.run(request(path, cmd, **fields))
    except DaemonNotRunning as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_ERROR_REPLY
    except KeyboardInterrupt:
        return 130
    if args.ctl_json:
        print(json.dumps(reply, ensure_ascii=False), file=out)
    elif reply["ok"]:
        print(format_status(reply) if cmd == "status" else format_result(cmd, reply), file=out)
    if not reply["ok"]:
        if not args.ctl_json:
            print(f"appliance ctl: {cmd}: {escape_controls(str(reply.get('error') or 'failed'))}", file=err)
        return EXIT_ERROR_REPLY
    return EXIT_OK


def command_fields(cmd: str, words: list[str]) -> dict[str, Any]:
    """Turn the command-line words after COMMAND into request fields."""
    if cmd != "volume":
        if words:
            raise CommandError(f"{cmd} takes no arguments (got: {' '.join(words)})")
        return {}
    if len(words) != 1:
        raise CommandError("volume takes one argument: N (0-100), or +N / -N to change it")
    word = words[0].strip()
    sign = word[:1] if word[:1] in "+-" else ""
    digits = word[len(sign):]
    if not digits.isdigit() or not digits.isascii() or int(digits) > 100:
        raise CommandError(f"volume takes N (0-100), or +N / -N to change it; got {word!r}")
    if sign == "+":
        return {"delta": int(digits)}
    if sign == "-":
        return {"delta": -int(digits)}
    return {"value": int(digits)}


# -- output -------------------------------------------------------------------------------------

_TURN_LABELS = {
    "press_to_start_ms": "press→start",
    "release_to_end_ms": "release→end",
    "end_to_first_audio_ms": "end→first audio",
    "first_audio_to_device_ms": "first audio→device",
    "barge_in_to_silent_ms": "barge-in→silent",
    "reply_ms": "reply",
}
_TURN_PLAIN = ("mode", "outcome", "end_reason")  # words that read fine without their key


def _human_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _show(value: Any) -> str:
    """A reply value for the terminal; text (a timer label the service chose, say) is escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (dict, list)):
        return escape_controls(json.dumps(value, ensure_ascii=False))
    return escape_controls(str(value))


def _turn_line(turn: Any) -> str:
    """One turn's metrics on one line; unset metrics and false flags are left out."""
    if not isinstance(turn, dict):
        return _show(turn)
    parts: list[str] = []
    at = turn.get("at")
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        parts.append(time.strftime("%H:%M:%S", time.localtime(at)))
    for key, value in turn.items():
        if key in ("at", "turn", "id") or value is None or value is False or value == "":
            continue
        label = _TURN_LABELS.get(key) or key.removesuffix("_ms").replace("_", " ")
        if key in _TURN_PLAIN:
            parts.append(_show(value))
        elif value is True:
            parts.append(label)
        elif key.endswith("_ms") and isinstance(value, (int, float)):
            parts.append(f"{label} {value:.0f} ms")
        else:
            parts.append(f"{label} {_show(value)}")
    number = turn.get("turn", turn.get("id"))
    prefix = f"#{number} " if number is not None else ""
    return prefix + (", ".join(parts) or "(no metrics)")


def format_status(reply: Reply) -> str:
    """A readable summary of a status reply.

    Understood fields: state, connection, session_age_s, volume (0-100), last_error, turns
    (a list of dicts; keys ending in _ms are shown as milliseconds, `at` as a wall-clock
    time); any other field is listed as is.
    """
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label + ':':<16} {text}")

    row("state", _show(reply.get("state")))
    row("connection", _show(reply.get("connection")))
    age = reply.get("session_age_s")
    row("session age", _human_duration(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else "-")
    volume = reply.get("volume")
    row("volume", f"{volume}%" if _is_int(volume) else _show(volume))
    row("last error", _show(reply.get("last_error")) if reply.get("last_error") else "none")
    shown = {"ok", "state", "connection", "session_age_s", "volume", "last_error", "turns", "timers"}
    for key, value in reply.items():
        if key in shown:
            continue
        if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool):
            row(key.removesuffix("_s").replace("_", " "), _human_duration(value))
        else:
            row(key.replace("_", " "), _show(value))
    if isinstance(reply.get("timers"), list):
        lines.append(format_timers(reply["timers"]))
    turns = reply.get("turns")
    if isinstance(turns, list) and turns:
        lines.append("last turns:")
        lines.extend(f"  {_turn_line(turn)}" for turn in turns)
    return "\n".join(lines)


def format_timers(timers: list[Any]) -> str:
    """`timers: none`, or one line per timer: label, id, what is left or that it rings."""
    if not timers:
        return "timers:          none"
    lines = ["timers:"]
    for timer in timers:
        if not isinstance(timer, dict):
            continue
        left = timer.get("remaining_s")
        when = "RINGING" if timer.get("state") == "ringing" else (
            f"{_human_duration(left)} left" if isinstance(left, (int, float)) else "-")
        lines.append(f"  {_show(timer.get('label'))} ({_show(timer.get('id'))}): {when}")
    return "\n".join(lines)


def format_result(cmd: str, reply: Reply) -> str:
    """One line for a successful non-status command."""
    if cmd == "timers":
        return format_timers(reply.get("timers") or [])
    extras = {key: value for key, value in reply.items() if key != "ok"}
    headline = f"{cmd}: ok"
    if cmd == "volume" and _is_int(extras.get("volume")):
        headline = f"volume: {extras.pop('volume')}%"
    details = ", ".join(f"{key.replace('_', ' ')} {_show(value)}" for key, value in extras.items())
    return headline + (f" ({details})" if details else "")
