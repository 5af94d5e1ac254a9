"""One accepted WebSocket, as the rest of a connection sees it: send, receive, close, drop, run tasks.

Every frame received is recorded (blobs scrubbed) before it is looked at; every frame sent counts towards
the scenario's count-based faults (``drop-after``, ``close-after``). A close is recorded before the close
frame goes out, so a test that waits for it sees the code and reason the client is about to get.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from appliance.emulator.journal import Journal
from appliance.emulator.records import ConnectionRecord, Received, scrub_blobs
from appliance.emulator.rejections import INTERNAL_ERROR, ProtocolViolation, cut_reason
from appliance.emulator.scenario import Scenario
from appliance.emulator.schema import parse_json_frame, snake_to_camel

__all__ = ["MALFORMED_FRAME", "Ended", "Wire"]

MALFORMED_FRAME = b'{"serverContent": {'  # truncated JSON: a client must log it and carry on


class Ended(Exception):
    """The emulator itself ended the connection (fault injection); stop whatever is running."""


class Wire:
    def __init__(self, ws: ServerConnection, record: ConnectionRecord, journal: Journal, scenario: Scenario,
                 *, faults: bool, close_timeout_s: float) -> None:
        self.ws = ws
        self.record = record
        self._journal = journal
        self._scenario = scenario
        self._faults = faults
        self._close_timeout_s = close_timeout_s
        self.sent_count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        return self.ws.state is State.OPEN and not self.record.closed

    # ------------------------------------------------------------------------------------------------------
    # Frames
    # ------------------------------------------------------------------------------------------------------

    async def send(self, payload: dict[str, Any] | bytes) -> None:
        """Send one server message as a binary frame, then apply count-based faults."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.sent_count += 1
        await self.ws.send(data)
        if not self._faults:
            return
        scenario = self._scenario
        if scenario.drop_after is not None and self.sent_count >= scenario.drop_after:
            await self.drop()
            raise Ended
        if scenario.close_after is not None and self.sent_count >= scenario.close_after:
            await self.close(scenario.close_code, scenario.close_reason)
            raise Ended

    async def send_injected(self, payload: dict[str, Any] | bytes) -> bool:
        """Send one server message now, beside whatever the reply task is sending; False if it could not."""
        if not self.is_open:
            return False
        try:
            await self.send(payload)
        except (ConnectionClosed, Ended):
            return False
        return True

    async def recv(self) -> tuple[Any, Received]:
        """The next client frame, parsed, and its record (already in the journal)."""
        frame = await self.ws.recv()
        now = time.monotonic()
        try:
            message = parse_json_frame(frame)
        except ProtocolViolation:
            await self._journal.add_received(Received(self.record.id, now, "invalid", None))
            raise
        kind = "invalid"
        if isinstance(message, dict) and len(message) == 1:
            kind = snake_to_camel(next(iter(message)))
        scrubbed = scrub_blobs(message) if isinstance(message, dict) else None
        received = Received(self.record.id, now, kind, scrubbed)
        await self._journal.add_received(received)
        return message, received

    # ------------------------------------------------------------------------------------------------------
    # Ending
    # ------------------------------------------------------------------------------------------------------

    def record_client_close(self) -> None:
        if self.record.closed_by is None:
            rcvd = self.ws.protocol.close_rcvd
            self.record.closed_by = "client"
            self.record.close_code = rcvd.code if rcvd is not None else 1006
            self.record.close_reason = rcvd.reason if rcvd is not None else ""
            self.record.closed_at = asyncio.get_running_loop().time()

    async def close(self, code: int, reason: str) -> None:
        """Close with a close frame (server side); recorded before the handshake completes."""
        if self.record.closed:
            return
        if self.ws.protocol.close_rcvd is not None:
            # the client closed first and the handler has not noticed yet
            self.record_client_close()
            return
        reason = cut_reason(reason)
        self.record.closed_by = "server"
        self.record.close_code = code
        self.record.close_reason = reason
        self.record.closed_at = asyncio.get_running_loop().time()
        await self._journal.changed()
        await self.ws.close(code, reason)

    async def drop(self) -> None:
        """Drop the TCP connection without a close frame: the client sees 1006."""
        if self.record.closed:
            return
        self.record.closed_by = "server"
        self.record.close_code = 1006
        self.record.close_reason = ""
        self.record.closed_at = asyncio.get_running_loop().time()
        self.ws.transport.abort()
        await self._journal.changed()

    async def shutdown(self) -> None:
        """Stop every task, wait for the close handshake (abort after ``close_timeout_s``), record the close."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await self.ws.wait_closed()
        except TimeoutError:
            self.ws.transport.abort()
        self.record_client_close()

    # ------------------------------------------------------------------------------------------------------
    # Tasks
    # ------------------------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` beside the reader loop; a violation closes as it says, a bug closes 1011."""
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # a task cancelled before it ran never awaits its coroutine; close it quietly
        task.add_done_callback(lambda _task: coro.close())
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except (ConnectionClosed, Ended):
            pass
        except ProtocolViolation as violation:
            await self.close(violation.code, violation.reason)
        except Exception:
            self.internal_error()
            try:
                await self.close(1011, INTERNAL_ERROR)
            except ConnectionClosed:
                pass

    def internal_error(self) -> None:
        """Report the exception being handled as an emulator bug on this connection."""
        self._journal.internal_error(self.record.id, traceback.format_exc())
