"""Offline stand-in for the Gemini Live API, served over loopback WebSockets.

Why: every test of the project talks to this instead of Google. It is deliberately strict (see
schema.py) so that a client bug fails a test here, with the close code and reason the real
service would send (protocol reference §8), rather than on a user's counter.

Wire behaviour (protocol reference §2-§5): server messages are JSON in binary frames; setup first and once;
manual activity control (activityStart/audio/activityEnd) when automatic activity detection is disabled;
replies are 24 kHz PCM chunks paced faster than real time, then generationComplete and turnComplete with
usageMetadata; barge-in, tool calls (BLOCKING or NON_BLOCKING, as declared), interactionStatus, session
resumption, goAway and injected faults per ``Scenario``. Tests can also inject faults at a moment of their
choosing: ``drop_all``, ``close_all``, ``drop_mid_reply``, ``send_go_away``, ``send_malformed``, ``close_1011``,
and ``go_offline`` (an offline window: connections refused until ``go_online`` or for N seconds).

With automatic activity detection left on, the emulator has no VAD: it buffers audio and treats
``audioStreamEnd`` as the end of the user's turn.

Bounds: ``received`` keeps the last ``max_received`` (10 000) frames, ``turns`` and ``connections`` the last
1 000 each, resumption handles the last 10 000; an activity keeps at most ``max_activity_seconds`` (5 min)
of audio (the rest is dropped and the turn flagged ``audio_truncated``); at most ``max_queued_replies``
replies may be queued (only possible with NO_INTERRUPTION), more closes 1011. The JSON-lines log goes
through a bounded queue (10 000 lines) to a writer thread; lines beyond that are dropped and counted.

This module is the server: listening, the open connections, faults aimed at them, the offline window, the
CLI. Each connection gets a ``Host`` (settings, the records sink, resumption handles) and nothing else.

Independence: this module builds and checks JSON itself and never imports the project's client code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from appliance.netutil import is_loopback_host
from appliance.emulator.config import DEFAULT_MODELS, EmulatorConfig
from appliance.emulator.connection import ConnectionHandler
from appliance.emulator.handshake import API_PATH, DEFAULT_PATH, credentials_of
from appliance.emulator.host import Host
from appliance.emulator.journal import Journal
from appliance.emulator.records import ConnectionRecord, Received, TurnEnding, TurnRecord
from appliance.emulator.rejections import INTERNAL_ERROR
from appliance.emulator.resumption import Conversations
from appliance.emulator.scenario import Scenario, ScenarioError

__all__ = [
    "ConnectionRecord",
    "DEFAULT_MODELS",
    "Emulator",
    "EmulatorConfig",
    "Received",
    "Scenario",
    "ScenarioError",
    "TurnEnding",
    "TurnRecord",
    "run_from_args",
]

MAX_GO_AWAY_S = 3600.0  # the longest timeLeft send_go_away takes

# websockets logs the request line at DEBUG level, and a request line may hold ?key=. Keep this logger at INFO.
_ws_logger = logging.getLogger("appliance.emulator.server.websockets")
# never below INFO (debug lines would show request URLs), otherwise as the root logger says
_ws_logger.addFilter(lambda record: record.levelno >= logging.INFO)


class Emulator:
    """The emulated service. Use ``async with Emulator(config, scenario) as emu: ... emu.url ...``."""

    def __init__(self, config: EmulatorConfig | None = None, scenario: Scenario | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._scenario = scenario or Scenario()
        self._fault_index = 0  # connections made since the scenario was set
        self._journal = Journal(self.config)
        self._host = Host(self.config, self._journal, Conversations(self.config.max_handles))
        self._active: dict[int, ConnectionHandler] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._port: int | None = None  # kept while offline, to listen there again
        self._offline = False
        self._online_task: asyncio.Task[None] | None = None
        # "localhost" may resolve to two addresses, each with its own free port; bind one of them only.
        self._bind_host = "127.0.0.1" if self.config.host == "localhost" else self.config.host

    # ------------------------------------------------------------------------------------------------------
    # Records (kept by the journal; these are the lists tests assert on)
    # ------------------------------------------------------------------------------------------------------

    @property
    def connections(self) -> list[ConnectionRecord]:
        return self._journal.connections

    @property
    def received(self) -> list[Received]:
        return self._journal.received

    @property
    def turns(self) -> list[TurnRecord]:
        return self._journal.turns

    @property
    def ignored_audio_chunks(self) -> int:
        return self._journal.ignored_audio_chunks

    @property
    def internal_errors(self) -> list[str]:
        """Emulator bugs (tracebacks); tests may assert it stays empty."""
        return self._journal.internal_errors

    # ------------------------------------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------------------------------------
    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @scenario.setter
    def scenario(self, value: Scenario) -> None:
        """Applies to connections opened from now on; fault_connections counts from here."""
        self._scenario = value
        self._fault_index = 0

    @property
    def port(self) -> int:
        if self._server is None and self._offline and self._port is not None:
            return self._port  # offline: the port it will listen on again
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        host = self._bind_host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + DEFAULT_PATH

    async def start(self) -> None:
        if self._offline:
            await self.go_online()
            return
        if self._server is not None:
            return
        if not is_loopback_host(self.config.host):
            raise ValueError(f"the emulator only serves this machine: use --host 127.0.0.1, not {self.config.host}")
        self._journal.start()
        try:
            await self._listen(self.config.port)
        except BaseException:
            await self._journal.close_log()
            raise

    async def _listen(self, port: int) -> None:
        self._server = await serve(
            self._handle, self._bind_host, port,
            process_request=self._process_request, logger=_ws_logger,
            close_timeout=self.config.close_timeout_s,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        online, self._online_task = self._online_task, None
        if online is not None and online is not asyncio.current_task():
            online.cancel()
            await asyncio.gather(online, return_exceptions=True)
        self._offline = False
        server, self._server = self._server, None
        if server is not None:
            await self.close_all(1001, "The emulator is shutting down.")
            server.close()
            await server.wait_closed()
        await self._journal.close_log()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[Emulator], bool], timeout: float) -> None:
        """Return once ``predicate(self)`` holds; re-checked on every recorded change.

        A predicate that raises (e.g. IndexError on ``emu.turns[0]`` before the first turn) counts as false.
        """
        if not self._journal.started:
            raise RuntimeError("the emulator is not running; call start() first")
        last_error: list[BaseException] = []

        def check() -> bool:
            try:
                return bool(predicate(self))
            except Exception as exc:  # noqa: BLE001 - reported in the timeout message
                last_error[:] = [exc]
                return False

        try:
            async with asyncio.timeout(timeout):
                await self._journal.wait_until(check)
        except TimeoutError:
            name = getattr(predicate, "__name__", repr(predicate))
            raised = f"; the predicate last raised {last_error[0]!r}" if last_error else ""
            raise TimeoutError(f"emulator: condition {name} still false after {timeout:g} s{raised}; "
                               f"state: {self.describe()}") from None

    def describe(self) -> str:
        """A one-paragraph summary of what happened so far, for failure messages."""
        return self._journal.describe()

    async def drop_all(self) -> None:
        """Abruptly drop every client connection (no close frame; clients see 1006)."""
        for handler in list(self._active.values()):
            await handler.drop()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every client connection with a close frame."""
        handlers = list(self._active.values())
        await asyncio.gather(*(handler.close(code, reason) for handler in handlers), return_exceptions=True)

    @property
    def offline(self) -> bool:
        """Inside an offline window (see ``go_offline``)."""
        return self._offline

    async def go_offline(self, seconds: float | None = None) -> int:
        """The network goes away: stop listening, so that new connections are refused (ECONNREFUSED), and
        drop every open connection (no close frame; clients see 1006). Back with ``go_online()``, or by itself
        after ``seconds``. Records, resumption handles and the scenario are kept. Returns how many were dropped.
        """
        if seconds is not None and not 0.0 <= seconds <= 3600.0:
            raise ValueError(f"seconds must be from 0 to 3600, got {seconds!r}")
        server = self._server
        if server is None and not self._offline:
            raise RuntimeError("the emulator is not running; call start() first")
        self._offline = True
        dropped = 0
        if server is not None:
            self._server = None
            server.server.close()  # the listening socket goes at once: connects are refused from now on
            server.close(close_connections=False)
            handlers = list(self._active.values())
            dropped = len(handlers)
            for handler in handlers:
                await handler.drop()
            await server.wait_closed()  # every handler of the dropped connections has returned
            await self._journal.changed()
        if self._online_task is not None:
            self._online_task.cancel()
            self._online_task = None
        if seconds is not None:
            self._online_task = asyncio.get_running_loop().create_task(self._online_after(seconds))
        return dropped

    async def go_online(self) -> None:
        """End an offline window: listen on the same port again (OSError if something else took it)."""
        task, self._online_task = self._online_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if not self._offline:
            return
        assert self._port is not None
        await self._listen(self._port)
        self._offline = False
        await self._journal.changed()

    async def _online_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        try:
            await self.go_online()
        except OSError as exc:  # the port was taken meanwhile: say so; `offline` stays True
            logging.getLogger(__name__).error("the emulator cannot listen again on port %s: %s", self._port, exc)

    def _targets(self, conn_id: int | None, *, set_up: bool) -> list[ConnectionHandler]:
        """The open connections a fault goes to: one by id, else all (with setup done when ``set_up``)."""
        if conn_id is not None:
            handler = self._active.get(conn_id)
            if handler is None or not handler.is_open:
                raise ValueError(f"connection #{conn_id} is not open (open: {sorted(self._active)})")
            return [handler]
        return [h for h in self._active.values() if h.is_open and (h.record.setup_complete or not set_up)]

    async def drop_mid_reply(self, fraction: float, conn_id: int | None = None) -> int:
        """Drop the TCP connection (no close frame) once ``fraction`` (0..1) of the reply now being sent has
        gone out; with no reply under way, of the next one. Already past that point: at the next chunk.

        Returns how many connections were armed; wait for the drop on ``connections[i].closed``.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be from 0 to 1, got {fraction!r}")
        targets = self._targets(conn_id, set_up=False)
        for handler in targets:
            handler.arm_drop_mid_reply(fraction)
        return len(targets)

    async def send_go_away(self, time_left_s: float, conn_id: int | None = None, *,
                           close_after: bool = True) -> int:
        """Send ``goAway`` with ``timeLeft`` now; unless ``close_after`` is False, close 1011 "Deadline
        expired" when that time is up, as the service does. Returns how many connections got it."""
        if not 0.0 <= time_left_s <= MAX_GO_AWAY_S:
            raise ValueError(f"time_left_s must be from 0 to {MAX_GO_AWAY_S:g} s, got {time_left_s!r}")
        targets = self._targets(conn_id, set_up=True)
        sent = await asyncio.gather(*(h.inject_go_away(time_left_s, close_after) for h in targets))
        return sum(sent)

    async def send_malformed(self, conn_id: int | None = None) -> int:
        """Send one truncated JSON frame now (beside any reply under way). Returns how many went out."""
        targets = self._targets(conn_id, set_up=True)
        sent = await asyncio.gather(*(h.inject_malformed() for h in targets))
        return sum(sent)

    async def close_1011(self, reason: str = INTERNAL_ERROR, conn_id: int | None = None) -> int:
        """Close with 1011 and ``reason`` now (a server fault mid-session). Returns how many were closed."""
        targets = self._targets(conn_id, set_up=False)
        await asyncio.gather(*(h.close(1011, reason) for h in targets), return_exceptions=True)
        return len(targets)

    # ------------------------------------------------------------------------------------------------------
    # Server plumbing
    # ------------------------------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not API_PATH.fullmatch(urlsplit(request.path).path):
            return connection.respond(404, "Not Found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        path = urlsplit(request.path).path
        match = API_PATH.fullmatch(path)
        assert match is not None  # _process_request refused everything else
        creds = credentials_of(request, match["endpoint"], self.config.rejected_keys)
        record = ConnectionRecord(
            id=next(self._ids), path=path, api_version=match["version"], endpoint=match["endpoint"],
            has_key=creds.has_key, key_in_url=creds.key_in_url, user_agent=request.headers.get("User-Agent"),
            opened_at=asyncio.get_running_loop().time(), extensions=request.headers.get("Sec-WebSocket-Extensions"),
        )
        self._journal.add_connection(record)
        scenario = self._scenario.copy()
        faults = scenario.faults_apply(self._fault_index)
        self._fault_index += 1
        handler = ConnectionHandler(self._host, ws, record, scenario, faults=faults, key_rejected=creds.rejected)
        self._active[record.id] = handler
        self._journal.log("connect", conn=record.id, path=path, has_key=record.has_key,
                          key_in_url=record.key_in_url, user_agent=record.user_agent)
        await self._journal.changed()
        try:
            await handler.run()
        finally:
            self._active.pop(record.id, None)
            self._journal.log("close", conn=record.id, closed_by=record.closed_by, code=record.close_code,
                              reason=record.close_reason)
            await self._journal.changed()


async def run_from_args(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM (returns 0) or cancellation (re-raised). Prints the ws:// URL once ready."""
    if not is_loopback_host(args.host):
        print(f"error: the emulator only serves this machine; use --host 127.0.0.1 (got {args.host})",
              file=sys.stderr)
        return 2
    try:
        scenario = Scenario.from_specs(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.log:
        try:
            open(args.log, "a", encoding="utf-8").close()
        except OSError as exc:
            print(f"error: cannot write the log file {args.log}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    config = EmulatorConfig(host=args.host, port=args.port, connection_lifetime_s=args.lifetime,
                            goaway_grace_s=args.grace, pace=args.pace, log_path=args.log)
    emulator = Emulator(config, scenario)
    try:
        await emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        print(emulator.url, flush=True)
        await stop.wait()
        return 0
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await emulator.stop()
