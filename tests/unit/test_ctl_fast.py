"""`appliance ctl` without asyncio: the blocking client against a real Unix socket served by a
thread, and `ctl` finding its socket without loading the config (which may have a mistake).

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

from appliance import cli
from appliance.cli import build_ctl_only_parser, build_parser, command_word, main
from appliance.ipc.client import MAX_REPLY_BYTES, DaemonNotRunning, request, request_sync
from appliance.ipc.ctl import EXIT_ERROR_REPLY, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, ctl_command, run_ctl
from appliance.ipc.wire import KNOWN_COMMANDS, ControlError, encode_line
from appliance.settings import paths
from appliance.settings.fields import sections
from appliance.settings.paths import SOCKET_ENV, SOCKET_SETTING, control_socket_path_for, ctl_socket_setting

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


def test_volume_without_a_value_asks_for_the_status_and_prints_the_volume(sock_path: Path) -> None:
    args = build_parser().parse_args(["ctl", "volume"])
    out, err = io.StringIO(), io.StringIO()
    with OneShotServer(sock_path, replying(encode_line(STATUS))) as server:
        code = run_ctl(args, sock_path, stdout=out, stderr=err)
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "status"}
    assert (out.getvalue(), err.getvalue()) == ("volume: 50%\n", "")


def test_volume_takes_at_most_one_value(sock_path: Path) -> None:
    err = io.StringIO()
    assert run_ctl(build_parser().parse_args(["ctl", "volume", "1", "2"]), sock_path, stderr=err) == EXIT_USAGE
    assert err.getvalue().startswith("appliance ctl: volume takes one argument") and "not running" not in err.getvalue()


def test_mute_without_a_word_asks_for_the_status_and_prints_whether_it_is_muted(sock_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with OneShotServer(sock_path, replying(encode_line({**STATUS, "state": "muted", "muted": True}))) as server:
        code = run_ctl(build_parser().parse_args(["ctl", "mute"]), sock_path, stdout=out, stderr=err)
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "status"}
    assert (out.getvalue(), err.getvalue()) == ("muted: yes\n", "")


@pytest.mark.parametrize(("word", "muted"), [("on", True), ("off", False), (" OFF ", False)])
def test_mute_on_and_off_send_the_mute_and_print_the_answer(sock_path: Path, word: str, muted: bool) -> None:
    reply = {"ok": True, "muted": muted, "state": "muted" if muted else "idle"}
    out = io.StringIO()
    with OneShotServer(sock_path, replying(encode_line(reply))) as server:
        code = run_ctl(build_parser().parse_args(["ctl", "mute", word]), sock_path, stdout=out)
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "mute", "muted": muted}
    assert out.getvalue() == f"muted: {'yes' if muted else 'no'} (state {reply['state']})\n"


@pytest.mark.parametrize(("words", "fragment"), [(["maybe"], "mute takes on|off; got 'maybe'"),
                                                 (["on", "off"], "mute takes one argument: on|off")])
def test_mute_refuses_other_words_before_connecting(sock_path: Path, words: list[str], fragment: str) -> None:
    err = io.StringIO()
    code = run_ctl(build_parser().parse_args(["ctl", "mute", *words]), sock_path, stderr=err)
    assert code == EXIT_USAGE
    assert err.getvalue().startswith(f"appliance ctl: {fragment}") and "not running" not in err.getvalue()


# -- the command line: a small parser for ctl, the whole one for the help ---------------------------


def test_the_help_lists_every_subcommand_and_every_ctl_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("demo", "ask", "run", "ctl", "doctor", "devices", "audio-test", "emulator"):
        assert f" {name} " in text
    ctl_help = text.split(" ctl ", 1)[1].split(" doctor ", 1)[0]
    for cmd in KNOWN_COMMANDS:
        assert cmd in ctl_help.replace(",", " ").split(), f"`appliance --help` does not list ctl {cmd}"


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["ctl", "status"], "ctl"),
        (["--config", "c.toml", "--set", "a.b=1", "--log-level", "debug", "ctl", "press"], "ctl"),
        (["--config=c.toml", "--set=control.socket=/x", "ctl", "tap"], "ctl"),
        (["--conf", "ctl", "run"], "run"),  # argparse's abbreviation, and a config file named "ctl"
        (["--", "ctl"], "ctl"),
        (["run", "ctl"], "run"),
        (["--help", "ctl"], None),
        (["-h"], None),
        (["--version"], None),
        (["--bogus", "ctl"], None),
        ([], None),
    ],
)
def test_the_command_word_is_found_past_the_global_options(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


@pytest.mark.parametrize(
    "argv",
    [
        ["ctl", "status"],
        ["--config", "c.toml", "--set", "control.socket=/x", "--set", "log.level=debug", "ctl", "volume", "+5"],
        ["--log-level", "info", "ctl", "night", "auto", "--json", "--socket", "/run/s.sock"],
        ["ctl", "mute", "on", "--json"],
    ],
)
def test_the_small_parser_reads_ctl_as_the_whole_parser_does(argv: list[str]) -> None:
    assert build_ctl_only_parser().parse_args(argv) == build_parser().parse_args(argv)


def test_main_runs_ctl_without_building_every_subcommands_parser(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse() -> None:
        raise AssertionError("`appliance ctl` built the whole parser")

    monkeypatch.setattr(cli, "build_parser", refuse)
    with OneShotServer(sock_path, replying(encode_line(STATUS))) as server:
        code = main(["--set", f"control.socket={sock_path}", "ctl", "volume"])
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "status"}
    assert capsys.readouterr().out == "volume: 50%\n"


# -- the socket path without loading the config ----------------------------------------------------


def ctl_args(*words: str):
    return build_parser().parse_args(list(words))


def test_ctl_reaches_the_daemon_named_in_a_config_that_has_another_mistake(
    tmp_path: Path, sock_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other mistake is `appliance config check`'s and the daemon's to report, not ctl's."""
    config = tmp_path / "config.toml"
    config.write_text(f'[live]\nmodle = "x"\n\n[control]\nsocket = "{sock_path}"\n')
    with OneShotServer(sock_path, replying(encode_line(STATUS))) as server:
        code = ctl_command(ctl_args("--config", str(config), "ctl", "status"), env={})
    assert code == EXIT_OK and json.loads(server.received) == {"cmd": "status"}
    captured = capsys.readouterr()
    assert "idle" in captured.out and "connected" in captured.out
    assert captured.err == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[control]\nsocket = "/run/unclosed.sock\n', "TOML syntax error in {config}: "),
        ('[control]\nsocket = "/' + "x" * 200 + '"\n', "invalid control.socket = '/xxx"),
        ("[control]\nsocket = 7\n", "invalid control.socket = 7 in {config}: expected a string"),
    ],
    ids=["not TOML", "too long", "not a string"],
)
def test_an_unusable_socket_setting_is_one_warning_and_ctl_goes_on_with_the_default(
    tmp_path: Path, sock_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    default = control_socket_path_for("", env)
    default.parent.mkdir()
    with OneShotServer(default, replying(encode_line(STATUS))):
        code = ctl_command(ctl_args("--config", str(config), "ctl", "status"), env=env)
    assert code == EXIT_OK
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("appliance ctl: warning: " + problem.format(config=config))
    assert lines[0].endswith(f"; using control socket {default}")


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

    assert ctl_socket_setting(str(config), [too_long, flag], env) == ("/run/from-set.sock", [])
    value, problems = ctl_socket_setting(str(config), [flag, too_long], env)
    assert value == "/run/from-set.sock", "the last --set is invalid, so the one before it counts"
    assert len(problems) == 1 and problems[0].startswith("invalid control.socket = '/xxx")
    assert problems[0].endswith("from --set: is 201 bytes long; a Unix socket path can be at most 107 bytes, "
                                "choose a shorter one")
    assert ctl_socket_setting(str(config), [too_long], env)[0] == "/run/from-env.sock"
    assert ctl_socket_setting(str(config), [], {}) == ("/run/from-file.sock", [])
    assert ctl_socket_setting(str(config), ["control.socket="], env) == ("", []), "empty means the default"
    assert ctl_socket_setting(None, [], {"APPLIANCE_CONFIG": str(config)})[0] == "/run/from-file.sock"
    config.write_text('[control]\n"\\u0073ocket" = "/run/escaped.sock"\n')
    assert ctl_socket_setting(str(config), [], {}) == ("/run/escaped.sock", [])


def test_a_config_that_does_not_set_the_socket_is_not_even_parsed(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[live\nmodle = "unclosed\n')
    assert ctl_socket_setting(str(config), [], {}) == ("", [])


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("missing.toml", "config file {path} (named by --config) does not exist"),
        ("fifo", "config file {path} is a FIFO, not a regular file"),
        ("/dev/null", None),
    ],
)
def test_a_config_file_that_cannot_be_read_leaves_the_default(tmp_path: Path, where: str, problem: str | None) -> None:
    path = tmp_path / where
    if where == "fifo":
        os.mkfifo(path, 0o600)  # reading it would block until a writer came, and none will
    assert ctl_socket_setting(str(path), ["control.socket=/run/a.sock"], {}) == ("/run/a.sock", [])
    assert ctl_socket_setting(str(path), [], {}) == ("", [problem.format(path=path)] if problem else [])


def test_ctl_looks_for_the_socket_under_the_names_the_schema_gives_it() -> None:
    spec = sections()["control"][1]["socket"]
    assert (SOCKET_SETTING, SOCKET_ENV) == (spec.dotted, spec.env_name)


def test_the_socket_paths_only_rule_is_the_one_ctl_applies_without_the_schema() -> None:
    """ctl accepts a valid socket string after check_socket_path alone: that must stay the whole rule."""
    from appliance.settings.path_rules import check_socket_path

    spec = sections()["control"][1]["socket"]
    assert spec.kind is str and not spec.is_tuple
    assert {key for key, value in spec.meta.items() if value} <= {"check", "help", "default"}
    assert spec.meta["check"] is check_socket_path


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
    assert len(lines) == 1 and lines[0].startswith("appliance: ") and "open to other users" in lines[0]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777


def test_a_socket_path_from_the_file_reaches_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/\\u001b[2J.sock"\n')
    assert ctl_command(ctl_args("--config", str(config), "ctl", "status"), env={}) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "\x1b" not in err and f"no control socket at {tmp_path}/\\x1b[2J.sock" in err
