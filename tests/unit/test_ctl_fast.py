"""`appliance ctl` without asyncio: the blocking client against a real Unix socket served by a
thread, and `ctl` finding its socket when the config file has a mistake.

What is checked is what the owner sees: the reply, one error line and the exit code.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.ipc.client import MAX_REPLY_BYTES, DaemonNotRunning, request, request_sync
from appliance.ipc.ctl import EXIT_ERROR_REPLY, EXIT_OK, EXIT_UNREACHABLE, ctl_command, run_ctl
from appliance.ipc.wire import ControlError, encode_line
from appliance.settings import paths
from appliance.settings.paths import salvage_socket_setting

WAIT = 10.0
STATUS = {"ok": True, "state": "idle", "connection": "connected", "volume": 50}


class OneShotServer:
    """A listening AF_UNIX socket whose thread takes one connection, reads one request line,
    then runs `answer`; `release` is set when the test is done with it."""

    def __init__(self, path: Path, answer: Callable[[OneShotServer, socket.socket], None]) -> None:
        self.path = path
        self.answer = answer
        self.received = b""
        self.send_error: OSError | None = None
        self.release = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(WAIT)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> OneShotServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.thread.join(WAIT)
        self.listener.close()
        assert not self.thread.is_alive()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(WAIT)
            while not self.received.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            try:
                self.answer(self, conn)
            except OSError as exc:
                self.send_error = exc


def replying(data: bytes) -> Callable[[OneShotServer, socket.socket], None]:
    def answer(server: OneShotServer, conn: socket.socket) -> None:
        conn.sendall(data)

    return answer


def silent(server: OneShotServer, conn: socket.socket) -> None:
    server.release.wait(WAIT)


def flooding(server: OneShotServer, conn: socket.socket) -> None:
    """Far more than the client may read, in one line that never ends."""
    conn.sendall(b"x" * (16 * MAX_REPLY_BYTES))
    server.release.wait(WAIT)


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "c.sock"


# -- the blocking client ---------------------------------------------------------------------------


def test_a_request_gets_the_daemons_reply_and_sends_one_json_line(sock_path: Path) -> None:
    with OneShotServer(sock_path, replying(b'{"ok": true, "volume": 40}\n')) as server:
        reply = request_sync(sock_path, "volume", value=40)
    assert reply == {"ok": True, "volume": 40}
    assert server.received == encode_line({"cmd": "volume", "value": 40})


def test_the_awaitable_request_the_tests_and_the_soak_use_gives_the_same_reply(sock_path: Path) -> None:
    with OneShotServer(sock_path, replying(b'{"ok": false, "error": "no alarm is ringing"}\n')) as server:
        reply = asyncio.run(asyncio.wait_for(request(sock_path, "stop"), WAIT))
    assert reply == {"ok": False, "error": "no alarm is ringing"}
    assert json.loads(server.received) == {"cmd": "stop"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json\n", "is not JSON"),
        (b'{"ok": true\n', "is not JSON"),
        (b"\xff\xfe\n", "is not JSON"),
        (b"[" * 100_000 + b"\n", "is not JSON"),
        (b'{"state": "idle"}\n', "has no ok field"),
        (b'{"ok": "yes"}\n', "has no ok field"),
        (b"[true]\n", "has no ok field"),
        (b"", "closed the connection without answering 'status'"),
    ],
)
def test_a_garbled_reply_is_one_error_line(sock_path: Path, data: bytes, fragment: str) -> None:
    with OneShotServer(sock_path, replying(data)):
        with pytest.raises(ControlError) as info:
            request_sync(sock_path, "status")
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, DaemonNotRunning)


def test_a_daemon_that_never_answers_costs_the_deadline_and_one_line(sock_path: Path) -> None:
    with OneShotServer(sock_path, silent) as server:
        with pytest.raises(ControlError) as info:
            request_sync(sock_path, "status", timeout=0.3)
        assert not server.release.is_set() and server.thread.is_alive(), "the client gave up on its own"
    assert str(info.value) == "the daemon did not answer 'status' within 0.3 s"


def test_nothing_listening_is_daemon_not_running(sock_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match=f"no control socket at {sock_path}"):
        request_sync(sock_path, "status")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: what a crashed daemon leaves
    with pytest.raises(DaemonNotRunning, match=f"nothing listens on {sock_path}"):
        request_sync(sock_path, "status")


def test_an_endless_reply_is_refused_after_the_limit_not_read_to_the_end(sock_path: Path) -> None:
    with OneShotServer(sock_path, flooding) as server:
        with pytest.raises(ControlError, match=f"longer than {MAX_REPLY_BYTES} bytes"):
            request_sync(sock_path, "status")
    assert isinstance(server.send_error, (BrokenPipeError, ConnectionResetError)), (
        "the client hung up before the server could send it everything"
    )


def test_a_long_reply_within_the_limit_is_read_whole(sock_path: Path) -> None:
    line = encode_line({"ok": True, "pad": ""})
    padded = encode_line({"ok": True, "pad": "x" * (MAX_REPLY_BYTES - len(line))})
    assert len(padded) == MAX_REPLY_BYTES
    with OneShotServer(sock_path, replying(padded)):
        assert request_sync(sock_path, "status")["pad"] == "x" * (MAX_REPLY_BYTES - len(line))


def test_ctl_prints_a_garbled_reply_as_one_line_and_exits_1(sock_path: Path) -> None:
    args = build_parser().parse_args(["ctl", "status"])
    out, err = io.StringIO(), io.StringIO()
    with OneShotServer(sock_path, replying(b"<html>\n")):
        code = run_ctl(args, sock_path, stdout=out, stderr=err)
    assert code == EXIT_ERROR_REPLY
    assert out.getvalue() == ""
    assert err.getvalue() == "appliance ctl: the daemon's reply to 'status' is not JSON\n"


# -- the socket path from a config with a mistake --------------------------------------------------


def ctl_args(*words: str):
    return build_parser().parse_args(list(words))


def test_ctl_reaches_the_daemon_named_in_a_config_that_has_another_mistake(
    tmp_path: Path, sock_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[live]\nmodle = "x"\n\n[control]\nsocket = "{sock_path}"\n')
    with OneShotServer(sock_path, replying(encode_line(STATUS))) as server:
        code = ctl_command(ctl_args("--config", str(config), "ctl", "status"), env={})
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "status"}
    captured = capsys.readouterr()
    assert "idle" in captured.out and "connected" in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("appliance ctl: warning: the config has a mistake (unknown key live.modle")
    assert captured.err.rstrip().endswith(f"; using control socket {sock_path}")


def test_a_config_that_loads_gives_no_warning(
    tmp_path: Path, sock_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[control]\nsocket = "{sock_path}"\n')
    with OneShotServer(sock_path, replying(encode_line(STATUS))):
        assert ctl_command(ctl_args("--config", str(config), "ctl", "status"), env={}) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_the_socket_comes_from_the_highest_layer_where_it_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[live]\nmodle = "x"\n[control]\nsocket = "/run/from-file.sock"\n')
    env = {"APPLIANCE_CONTROL_SOCKET": "/run/from-env.sock"}
    flag = "control.socket=/run/from-set.sock"
    too_long = "control.socket=/" + "x" * 200

    assert salvage_socket_setting(str(config), [flag, too_long], env) == "/run/from-set.sock"
    assert salvage_socket_setting(str(config), [too_long], env) == "/run/from-env.sock"
    assert salvage_socket_setting(str(config), [], {}) == "/run/from-file.sock"
    config.write_text('[control]\nsocket = "/run/unclosed.sock\n')  # not TOML: nothing in it is trusted
    assert salvage_socket_setting(str(config), [], {}) == ""
    config.write_text(f'[control]\nsocket = "/{"x" * 200}"\n')
    assert salvage_socket_setting(str(config), [], {}) == ""
    assert salvage_socket_setting(str(tmp_path / "missing.toml"), [], {}) == ""


def test_a_fifo_as_the_config_falls_back_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # reading it would block until a writer came, and none will
    assert salvage_socket_setting(str(fifo), ["control.socket=/run/a.sock"], {}) == "/run/a.sock"
    assert salvage_socket_setting(str(fifo), [], {}) == ""


def test_the_fallback_socket_directory_must_still_be_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "tmp"
    parent.mkdir()
    monkeypatch.setattr(paths, "RUNTIME_FALLBACK_PARENT", str(parent))
    shared = parent / f"appliance-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    config = tmp_path / "config.toml"
    config.write_text("[live]\nmodle = 'x'\n")

    code = ctl_command(ctl_args("--config", str(config), "ctl", "status"), env={})

    lines = capsys.readouterr().err.splitlines()
    assert code == EXIT_UNREACHABLE
    assert len(lines) == 2 and lines[0].startswith("appliance ctl: warning: the config has a mistake")
    assert lines[1].startswith("appliance: ") and "open to other users" in lines[1]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777
