"""The control socket under abuse: floods of silent clients, tricklers, and lines it cannot parse.

Each test runs a real ControlServer on a real Unix socket and talks to it as a hostile or
clumsy local client would; what is checked is what `appliance ctl` (or a person with socat)
would notice: an answer, an error line, or a closed connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from appliance.ipc.client import request
from appliance.ipc.ctl import ctl_main
from appliance.ipc.server import MAX_CLIENTS, ControlServer
from appliance.ipc.wire import MAX_REQUEST_BYTES

WAIT = 5.0


class Recorder:
    """A handler that records what reached it; "press" can be held until the test lets it go."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.hold_press = False
        self.press_entered = asyncio.Event()
        self.press_release = asyncio.Event()

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd == "press" and self.hold_press:
            self.press_entered.set()
            await self.press_release.wait()
        return {"state": "idle"} if cmd == "status" else {}


class Client:
    """A raw client, to send what `request()` never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 20), WAIT)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), WAIT)
        assert line.endswith(b"\n"), f"connection closed instead of a reply: {line!r}"
        assert line.count(b"\n") == 1
        reply = json.loads(line)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
        return reply

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), WAIT) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


def test_status_answers_within_a_second_while_silent_clients_and_a_trickler_fill_every_slot(
    sock_path: Path,
) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with ControlServer(sock_path, recorder.handle) as server:
            silent = [await Client.connect(sock_path) for _ in range(MAX_CLIENTS)]
            trickler = await Client.connect(sock_path)
            await trickler.send(b'{"cm')  # a line begun and never finished
            # Seventeen clients for sixteen slots: the one connected first had to make room.
            notice = await silent[0].reply()
            assert notice["ok"] is False and "idle" in notice["error"]
            assert await silent[0].at_eof()

            status = await request(sock_path, "status", timeout=1.0)
            assert status == {"ok": True, "state": "idle"}
            assert (await silent[1].reply())["ok"] is False, "the next longest idle client made room this time"
            assert server.client_count <= MAX_CLIENTS
            for client in (*silent, trickler):
                client.writer.close()

    run(scenario())
    assert recorder.calls == [("status", {})]


def test_a_trickling_client_is_closed_when_its_line_deadline_passes(sock_path: Path) -> None:
    async def scenario() -> None:
        # A per-read timeout of 0.2 s would never fire for this client, which sends every ~0.05 s.
        async with ControlServer(sock_path, Recorder().handle, idle_timeout=30.0, line_timeout=0.5):
            client = await Client.connect(sock_path)
            await client.send(b"{")
            sent = 1
            async with asyncio.timeout(20):
                while True:
                    try:
                        line = await asyncio.wait_for(client.reader.readline(), 0.05)
                        break
                    except TimeoutError:
                        await client.send(b" ")
                        sent += 1
            reply = json.loads(line)
            assert reply["ok"] is False and "not finished within 0.5 s" in reply["error"]
            assert await client.at_eof()
            assert sent > 1, "the client really did trickle"

    run(scenario())


def test_the_idle_deadline_counts_from_connecting_not_from_the_last_byte(sock_path: Path) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, Recorder().handle, idle_timeout=0.5, line_timeout=30.0):
            client = await Client.connect(sock_path)
            async with asyncio.timeout(20):
                while True:
                    try:
                        line = await asyncio.wait_for(client.reader.readline(), 0.05)
                        break
                    except TimeoutError:
                        await client.send(b" ")
            assert json.loads(line)["ok"] is False
            assert await client.at_eof()

    run(scenario())


def test_a_client_whose_request_is_being_answered_keeps_its_slot(sock_path: Path) -> None:
    recorder = Recorder()
    recorder.hold_press = True

    async def scenario() -> None:
        async with ControlServer(sock_path, recorder.handle, max_clients=2):
            busy = await Client.connect(sock_path)
            await busy.send(b'{"cmd": "press"}\n')
            await asyncio.wait_for(recorder.press_entered.wait(), WAIT)
            idle = await Client.connect(sock_path)

            newcomer = await Client.connect(sock_path)
            await newcomer.send(b'{"cmd": "status"}\n')
            assert (await newcomer.reply())["ok"] is True
            assert (await idle.reply())["ok"] is False and await idle.at_eof(), "the idle one made room"

            # Now both slots are held: `busy` is being answered, `newcomer` is idle and goes next.
            last = await Client.connect(sock_path)
            await last.send(b'{"cmd": "status"}\n')
            assert (await last.reply())["ok"] is True
            assert (await newcomer.reply())["ok"] is False and await newcomer.at_eof()

            recorder.press_release.set()
            assert (await busy.reply()) == {"ok": True}, "the busy client got its answer after all"
            for client in (busy, last):
                await client.close()

    run(scenario())


def test_a_newcomer_is_refused_only_while_every_slot_is_busy(sock_path: Path) -> None:
    recorder = Recorder()
    recorder.hold_press = True

    async def scenario() -> None:
        async with ControlServer(sock_path, recorder.handle, max_clients=1):
            busy = await Client.connect(sock_path)
            await busy.send(b'{"cmd": "press"}\n')
            await asyncio.wait_for(recorder.press_entered.wait(), WAIT)

            refused = await Client.connect(sock_path)
            reply = await refused.reply()
            assert reply["ok"] is False and "too many" in reply["error"] and "busy" in reply["error"]
            assert await refused.at_eof()

            recorder.press_release.set()
            assert (await busy.reply())["ok"] is True
            await busy.close()
            assert (await request(sock_path, "status", timeout=WAIT))["ok"] is True

    run(scenario())


UNPARSABLE: list[tuple[bytes, str]] = [
    (b"\xff\xfe{\"cmd\": \"status\"}", "not UTF-8"),
    (b'{"cmd": "st\xc3"}', "not UTF-8"),
    (b"[" * 60000, "nested too deeply"),
    (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
    (b"[" * 100000, str(MAX_REQUEST_BYTES)),
    (b"", "not JSON"),
    (b'{"cmd": "status"', "not JSON"),
    (b'{"cmd": "volume", "value": ' + b"9" * 5000 + b"}", "not JSON"),
    (b'"status"', "JSON object"),
    (b"null", "JSON object"),
    (b"42", "JSON object"),
    (b"[]", "JSON object"),
    (b'{"cmd": 5}', '"cmd"'),
    (b'{"cmd": ["status"]}', '"cmd"'),
    (b'{"cmd": {"nested": true}}', '"cmd"'),
    (b'{"cmd": "volume", "value": "50"}', "0-100"),
    (b'{"cmd": "volume", "value": NaN}', "0-100"),
    (b'{"cmd": "volume", "value": 50.0}', "0-100"),
    (b'{"cmd": "volume", "delta": ' + b"[" * 300 + b"]" * 300 + b"}", "-100..100"),
    (b'{"cmd": "volume", "value": 5, "delta": 5}', "exactly one"),
    (b'{"cmd": "press", "\\ud800\\n\\u001b[31m": 1}', "takes no arguments"),
    (b'{"cmd": "\\u001b[2J\\ud800"}', "unknown command"),
]


def test_every_unparsable_line_gets_one_error_line_and_the_connection_stays_usable(sock_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with ControlServer(sock_path, recorder.handle):
            client = await Client.connect(sock_path)
            for line, expected in UNPARSABLE:
                await client.send(line + b"\n")
                reply = await client.reply()
                assert reply["ok"] is False, line[:60]
                assert expected in reply["error"], (line[:60], reply)
                assert "\n" not in reply["error"] and len(reply["error"]) <= 300
                await client.send(b'{"cmd": "status"}\n')
                assert (await client.reply())["ok"] is True, f"the connection died after {line[:60]!r}"
            await client.close()

    run(scenario())
    assert recorder.calls == [("status", {})] * len(UNPARSABLE), "nothing unparsable reached the handler"


def test_making_room_and_shutting_down_leave_no_error_in_the_log(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, Recorder().handle, max_clients=2):
            clients = [await Client.connect(sock_path) for _ in range(2)]
            newcomer = await Client.connect(sock_path)
            assert (await clients[0].reply())["ok"] is False, "one client made room"
            await newcomer.send(b'{"cmd": "status"}\n')
            assert (await newcomer.reply())["ok"] is True
        # the server closed with two clients still connected
        assert await clients[1].at_eof() and await newcomer.at_eof()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_ctl_prints_text_from_the_service_with_its_escape_sequences_visible(
    sock_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = "eggs\x1b[2J\u202edone\nFAKE"

    async def handle(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        if cmd == "timers":
            return {"timers": [{"id": "t1", "label": label, "state": "ringing"}]}
        return {"ok": False, "error": f"refused: {label}"}

    async def scenario() -> tuple[int, int]:
        async with ControlServer(sock_path, handle):
            timers = await asyncio.to_thread(ctl_main, ["timers"], sock_path)
            refused = await asyncio.to_thread(ctl_main, ["stop"], sock_path)
            return timers, refused

    assert run(scenario()) == (0, 1)
    captured = capsys.readouterr()
    assert "eggs\\x1b[2J\\u202edone\\nFAKE (t1): RINGING" in captured.out
    assert "\x1b" not in captured.out + captured.err and "\u202e" not in captured.out + captured.err
    assert captured.err.count("\n") == 1 and "refused: eggs\\x1b[2J" in captured.err
