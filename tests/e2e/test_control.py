"""The control socket as `appliance ctl` and other clients see it: a real server on a real Unix socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.ipc.client import DaemonNotRunning, request
from appliance.ipc.ctl import add_arguments, ctl_main
from appliance.ipc.server import ControlServer
from appliance.ipc.wire import KNOWN_COMMANDS, MAX_REQUEST_BYTES, CommandError, ControlError

WAIT = 5.0


class StandInDaemon:
    """The test's own stand-in for the daemon's handler: records calls and keeps a volume and a state."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.state = "idle"
        self.volume = 50
        self.explode_on: set[str] = set()

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd in self.explode_on:
            raise RuntimeError(f"stand-in blew up on {cmd}\nsecond line")
        if cmd == "status":
            return {
                "state": self.state,
                "connection": "connected",
                "session_age_s": 192.4,
                "volume": self.volume,
                "last_error": None,
                "reconnects": 2,
                "turns": [{"at": 1_700_000_000.0, "mode": "hold", "barge_in": False, "press_to_start_ms": 4.2,
                           "release_to_end_ms": None, "end_to_first_audio_ms": 410.0, "underruns": 0,
                           "outcome": "answered"}],
            }
        if cmd == "press":
            self.state = "listening"
            return {"state": self.state}
        if cmd in ("release", "tap"):
            self.state = "thinking"
            return {"state": self.state}
        if cmd == "stop":
            return {"ok": False, "error": "no alarm is ringing"}
        if cmd == "volume":
            if "value" in args:
                self.volume = args["value"]
            else:
                self.volume = max(0, min(100, self.volume + args["delta"]))
            return {"volume": self.volume}
        if cmd == "new-conversation":
            raise CommandError("cannot start a new conversation while speaking")
        raise AssertionError(f"the server passed an unvalidated command {cmd!r}")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Client:
    """A raw newline-JSON client, to send what `request()` never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), WAIT)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), WAIT)
        assert line.endswith(b"\n"), f"connection closed instead of a reply: {line!r}"
        return json.loads(line)

    async def ask(self, obj: Any) -> dict[str, Any]:
        await self.send_raw(json.dumps(obj).encode() + b"\n")
        return await self.reply()

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), WAIT) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


def test_each_command_round_trips_to_the_handler(sock_path: Path) -> None:
    daemon = StandInDaemon()

    async def scenario() -> None:
        async with ControlServer(sock_path, daemon.handle):
            status = await request(sock_path, "status")
            assert status["ok"] is True and status["state"] == "idle" and status["volume"] == 50
            assert (await request(sock_path, "press")) == {"ok": True, "state": "listening"}
            assert (await request(sock_path, "release")) == {"ok": True, "state": "thinking"}
            assert (await request(sock_path, "tap"))["ok"] is True
            assert (await request(sock_path, "stop")) == {"ok": False, "error": "no alarm is ringing"}
            assert (await request(sock_path, "volume", value=40)) == {"ok": True, "volume": 40}
            assert (await request(sock_path, "volume", delta=-15)) == {"ok": True, "volume": 25}
            refused = await request(sock_path, "new-conversation")
            assert refused == {"ok": False, "error": "cannot start a new conversation while speaking"}

    run(scenario())
    assert [cmd for cmd, _ in daemon.calls] == list(KNOWN_COMMANDS[:6]) + ["volume", "new-conversation"]
    assert daemon.calls[5] == ("volume", {"value": 40})
    assert daemon.calls[6] == ("volume", {"delta": -15})


def test_socket_is_group_writable_only_and_its_new_directory_private(sock_path: Path) -> None:
    async def scenario() -> None:
        server = ControlServer(sock_path, StandInDaemon().handle)
        await server.start()
        try:
            st = os.stat(sock_path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o750
        finally:
            await server.close()
        assert not sock_path.exists(), "the socket file is removed on close"

    old_umask = os.umask(0o002)  # a permissive umask must not leak into the socket's mode
    try:
        run(scenario())
    finally:
        os.umask(old_umask)


def test_stale_socket_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(sock_path))  # a socket file that nobody listens on, as after a crash
    leftover.close()
    assert sock_path.exists()

    async def scenario() -> None:
        async with ControlServer(sock_path, StandInDaemon().handle):
            assert (await request(sock_path, "status"))["ok"] is True

    run(scenario())


def test_a_live_daemon_is_not_displaced(sock_path: Path) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, StandInDaemon().handle):
            second = ControlServer(sock_path, StandInDaemon().handle)
            with pytest.raises(ControlError, match="already listening") as excinfo:
                await second.start()
            assert str(sock_path) in str(excinfo.value)
            assert (await request(sock_path, "status"))["ok"] is True, "the first daemon still answers"

    run(scenario())


def test_a_regular_file_in_the_way_is_left_alone(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    sock_path.write_text("precious")

    async def scenario() -> None:
        with pytest.raises(ControlError, match="not a socket"):
            await ControlServer(sock_path, StandInDaemon().handle).start()

    run(scenario())
    assert sock_path.read_text() == "precious"


def test_malformed_lines_get_an_error_and_the_connection_stays_usable(sock_path: Path) -> None:
    daemon = StandInDaemon()

    async def scenario() -> None:
        async with ControlServer(sock_path, daemon.handle):
            client = await Client.connect(sock_path)
            await client.send_raw(b"this is not json\n")
            reply = await client.reply()
            assert reply["ok"] is False and "not JSON" in reply["error"]
            assert (await client.ask([1, 2, 3]))["error"].startswith("a request must be a JSON object")
            assert '"cmd"' in (await client.ask({"value": 3}))["error"]
            assert "0-100" in (await client.ask({"cmd": "volume", "value": 101}))["error"]
            assert "0-100" in (await client.ask({"cmd": "volume", "value": True}))["error"]
            assert "takes no arguments" in (await client.ask({"cmd": "press", "force": 1}))["error"]

            await client.send_raw(b'{"cmd": "status", "pad": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}\n')
            too_long = await client.reply()
            assert too_long["ok"] is False and str(MAX_REQUEST_BYTES) in too_long["error"]

            assert (await client.ask({"cmd": "press"})) == {"ok": True, "state": "listening"}
            await client.close()

    run(scenario())
    assert [cmd for cmd, _ in daemon.calls] == ["press"], "nothing malformed reached the handler"


def test_unknown_command_lists_the_known_ones(sock_path: Path) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, StandInDaemon().handle):
            reply = await request(sock_path, "reboot")
            assert reply["ok"] is False
            assert "'reboot'" in reply["error"]
            for known in KNOWN_COMMANDS:
                assert known in reply["error"]

    run(scenario())


def test_handler_exception_is_an_error_reply_and_the_server_survives(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = StandInDaemon()
    daemon.explode_on = {"tap"}

    async def scenario() -> None:
        async with ControlServer(sock_path, daemon.handle):
            client = await Client.connect(sock_path)
            reply = await client.ask({"cmd": "tap"})
            assert reply["ok"] is False
            assert "RuntimeError" in reply["error"] and "stand-in blew up on tap" in reply["error"]
            assert "\n" not in reply["error"]
            assert (await client.ask({"cmd": "status"}))["ok"] is True, "same connection still served"
            await client.close()
            assert (await request(sock_path, "press"))["ok"] is True, "new connections still served"

    with caplog.at_level(logging.ERROR, logger="appliance.ipc.server"):
        run(scenario())
    assert any(record.exc_info and "tap" in record.getMessage() for record in caplog.records)


def test_a_full_socket_closes_the_longest_idle_client_for_a_newcomer(sock_path: Path) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, StandInDaemon().handle, max_clients=2) as server:
            first, second = await Client.connect(sock_path), await Client.connect(sock_path)
            assert (await first.ask({"cmd": "status"}))["ok"] and (await second.ask({"cmd": "status"}))["ok"]

            third = await Client.connect(sock_path)
            assert (await third.ask({"cmd": "press"})) == {"ok": True, "state": "listening"}, "the newcomer is served"

            notice = await first.reply()
            assert notice["ok"] is False and "idle" in notice["error"] and "reconnect" in notice["error"]
            assert await first.at_eof(), "the client idle longest made room"
            assert (await second.ask({"cmd": "status"}))["ok"], "the others keep their connection"
            assert server.client_count == 2
            await third.close()
            await second.close()

    run(scenario())


def test_a_silent_client_is_closed_after_the_idle_timeout(sock_path: Path) -> None:
    async def scenario() -> None:
        async with ControlServer(sock_path, StandInDaemon().handle, idle_timeout=0.2):
            client = await Client.connect(sock_path)
            assert await client.at_eof()

    run(scenario())


def test_request_reports_a_missing_daemon(sock_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match=str(sock_path)):
        run(request(sock_path, "status"))


# -- `appliance ctl` ------------------------------------------------------------------------------


def ctl_against_server(sock_path: Path, daemon: StandInDaemon, argv: Any) -> int:
    """Run the sync CLI in a worker thread while this thread's loop serves the socket."""

    async def scenario() -> int:
        async with ControlServer(sock_path, daemon.handle):
            return await asyncio.to_thread(ctl_main, argv, sock_path)

    return run(scenario())


def test_ctl_status_prints_a_readable_summary(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_against_server(sock_path, StandInDaemon(), ["status"]) == 0
    out = capsys.readouterr().out
    assert "state:" in out and "idle" in out
    assert "connected" in out
    assert "3 min 12 s" in out
    assert "50%" in out
    assert "last error:" in out and "none" in out
    assert "reconnects:" in out and "2" in out
    turn = out.splitlines()[-1]
    assert turn.startswith("  ") and "hold" in turn and "answered" in turn
    assert "press→start 4 ms" in turn and "end→first audio 410 ms" in turn and "underruns 0" in turn
    assert "release" not in turn and "barge" not in turn, "unset metrics and false flags are left out"


def test_ctl_volume_relative_and_one_line_result(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daemon = StandInDaemon()
    assert ctl_against_server(sock_path, daemon, ["volume", "-10"]) == 0
    assert capsys.readouterr().out == "volume: 40%\n"
    assert ctl_against_server(sock_path, daemon, ["volume", "+5"]) == 0
    assert ctl_against_server(sock_path, daemon, ["volume", "70"]) == 0
    assert daemon.calls == [("volume", {"delta": -10}), ("volume", {"delta": 5}), ("volume", {"value": 70})]
    capsys.readouterr()
    assert ctl_against_server(sock_path, daemon, ["press"]) == 0
    assert capsys.readouterr().out == "press: ok (state listening)\n"


def test_ctl_json_prints_the_raw_reply(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_against_server(sock_path, StandInDaemon(), ["status", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["ok"] is True and reply["turns"][0]["end_to_first_audio_ms"] == 410.0


def test_ctl_error_reply_exits_1(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_against_server(sock_path, StandInDaemon(), ["stop"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "appliance ctl: stop: no alarm is ringing"
    assert captured.out == ""


def test_ctl_socket_option_overrides_the_default(
    sock_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> int:
        async with ControlServer(sock_path, StandInDaemon().handle):
            return await asyncio.to_thread(ctl_main, ["tap", "--socket", str(sock_path)], tmp_path / "nowhere.sock")

    assert run(scenario()) == 0
    assert capsys.readouterr().out == "tap: ok (state thinking)\n"


def test_ctl_without_a_daemon_exits_2_and_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.sock"
    assert ctl_main(["status"], missing) == 2
    err = capsys.readouterr().err
    assert "not running" in err and str(missing) in err and err.count("\n") == 1

    stale = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))
    leftover.close()
    assert ctl_main(["press"], stale) == 2
    err = capsys.readouterr().err
    assert "not running" in err and str(stale) in err


def test_ctl_rejects_bad_arguments_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.sock"
    for argv in (["volume", "loud"], ["volume", "101"], ["volume", "10", "20"], ["press", "now"]):
        assert ctl_main(argv, missing) == 2
        err = capsys.readouterr().err
        assert "not running" not in err, f"{argv} should fail on its arguments, not on the socket"
        assert err.startswith("appliance ctl: ")
    assert ctl_main(["reboot"], missing) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_ctl_main_accepts_a_namespace_from_a_parent_parser(
    sock_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = argparse.ArgumentParser(prog="appliance")
    sub = parent.add_subparsers(dest="command")  # the parent's own "command" must not clash with ctl's
    add_arguments(sub.add_parser("ctl"))
    args = parent.parse_args(["ctl", "volume", "+10", "--socket", str(sock_path)])
    assert args.command == "ctl"
    assert ctl_against_server(sock_path, StandInDaemon(), args) == 0
    assert capsys.readouterr().out == "volume: 60%\n"


def test_appliance_ctl_command_line_end_to_end(sock_path: Path) -> None:
    """The real `appliance ctl` process against a live socket, as a user types it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}

    async def scenario() -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        async with ControlServer(sock_path, StandInDaemon().handle):
            def appliance(*words: str) -> subprocess.CompletedProcess:
                return subprocess.run([sys.executable, "-m", "appliance", "ctl", *words, "--socket", str(sock_path)],
                                      capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)

            return await asyncio.to_thread(appliance, "press"), await asyncio.to_thread(appliance, "stop")

    pressed, stopped = run(scenario())
    assert (pressed.returncode, pressed.stdout) == (0, "press: ok (state listening)\n")
    assert stopped.returncode == 1 and "no alarm is ringing" in stopped.stderr


def appliance_ctl_status(config: Path, sock_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`appliance --config CONFIG ctl status` as its own process, while a stand-in daemon serves `sock_path`."""
    command = [sys.executable, "-m", "appliance", "--config", str(config), "ctl", "status"]

    async def scenario() -> subprocess.CompletedProcess:
        async with ControlServer(sock_path, StandInDaemon().handle):
            return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60,
                                           env=env, stdin=subprocess.DEVNULL)

    return run(scenario())


def test_appliance_ctl_reaches_the_daemon_through_a_config_with_a_mistake(sock_path: Path, tmp_path: Path) -> None:
    """The owner's typo elsewhere in the file must not hide the state: ctl does not even report it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    config = tmp_path / "config.toml"
    config.write_text(f'[live]\nmodle = "gemini-live"\n\n[control]\nsocket = "{sock_path}"\n')

    result = appliance_ctl_status(config, sock_path, env)
    assert result.returncode == 0, result.stderr
    assert "idle" in result.stdout and "connected" in result.stdout
    assert result.stderr == ""

    # Only ctl is lenient: the daemon itself still refuses the file.
    refused = subprocess.run([sys.executable, "-m", "appliance", "--config", str(config), "run"],
                             capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "unknown key live.modle" in refused.stderr


def test_appliance_ctl_warns_once_about_a_config_that_is_not_toml_and_uses_the_default_socket(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_", "RUNTIME_DIRECTORY"))}
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "runtime")
    default = tmp_path / "runtime" / "appliance" / "control.sock"
    default.parent.mkdir(parents=True, mode=0o700)
    config = tmp_path / "config.toml"
    config.write_text('[control]\nsocket = "/run/elsewhere.sock\n')  # the string is never closed

    result = appliance_ctl_status(config, default, env)
    assert result.returncode == 0, result.stderr
    assert "idle" in result.stdout and "connected" in result.stdout
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"appliance ctl: warning: TOML syntax error in {config}: ")
    assert result.stderr.endswith(f"; using control socket {default}\n")


def test_ctl_volume_without_a_value_prints_the_volume(sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daemon = StandInDaemon()
    assert ctl_against_server(sock_path, daemon, ["volume"]) == 0
    assert capsys.readouterr().out == "volume: 50%\n"
    assert daemon.calls == [("status", {})], "asking is not setting: the volume stays as it was"
