"""`night on|off|auto` on both ends of the control socket: what the server accepts, what
`appliance ctl` sends, and how the answer reads in a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.ipc.ctl import EXIT_USAGE, command_fields, ctl_main
from appliance.ipc.format import format_result, format_status
from appliance.ipc.server import validate_request
from appliance.ipc.wire import KNOWN_COMMANDS, CommandError


def test_night_is_a_known_command() -> None:
    assert "night" in KNOWN_COMMANDS


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
def test_the_server_accepts_each_night_mode(mode: str) -> None:
    assert validate_request({"cmd": "night", "mode": mode}) == ("night", {"mode": mode})


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"cmd": "night"}, 'needs "mode"'),
        ({"cmd": "night", "mode": "dim"}, "got 'dim'"),
        ({"cmd": "night", "mode": "ON"}, "got 'ON'"),
        ({"cmd": "night", "mode": 1}, "got 1"),
        ({"cmd": "night", "mode": None}, "got None"),
        ({"cmd": "night", "mode": ["on"]}, "got ['on']"),
        ({"cmd": "night", "mode": "on", "until": "07:00"}, "not: until"),
        ({"cmd": "night", "value": "on"}, "not: value"),
    ],
)
def test_a_bad_night_request_is_refused_in_one_line_that_says_what_to_send(request_: dict, fragment: str) -> None:
    with pytest.raises(CommandError) as caught:
        validate_request(request_)
    message = str(caught.value)
    assert fragment in message
    assert "on, off, auto" in message
    assert '{"cmd": "night", "mode": "auto"}' in message
    assert "\n" not in message


def test_other_commands_still_take_no_mode() -> None:
    with pytest.raises(CommandError, match="takes no arguments"):
        validate_request({"cmd": "status", "mode": "on"})


@pytest.mark.parametrize(("word", "mode"), [("on", "on"), ("off", "off"), ("auto", "auto"), (" Auto ", "auto")])
def test_ctl_turns_the_word_into_the_mode_field(word: str, mode: str) -> None:
    assert command_fields("night", [word]) == {"mode": mode}


@pytest.mark.parametrize("words", [[], ["dim"], ["on", "off"], ["1"]])
def test_ctl_refuses_anything_else_for_night(words: list[str]) -> None:
    with pytest.raises(CommandError, match=r"night takes .*on\|off\|auto"):
        command_fields("night", words)


def test_ctl_rejects_a_bad_night_word_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main(["night", "dim"], tmp_path / "missing.sock") == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("appliance ctl: night takes on|off|auto") and "not running" not in err


def test_the_other_commands_keep_their_fields() -> None:
    assert command_fields("volume", ["+5"]) == {"delta": 5}
    assert command_fields("status", []) == {}
    with pytest.raises(CommandError, match="takes no arguments"):
        command_fields("press", ["on"])


def status_reply(**extra: object) -> dict:
    return {"ok": True, "state": "idle", "connection": "connected", "session_age_s": 5.0, "volume": 40,
            "last_error": None, **extra}


def test_status_shows_a_night_line() -> None:
    text = format_status(status_reply(night="on (set by hand)"))
    lines = text.splitlines()
    assert "night:           on (set by hand)" in lines
    assert lines.index("night:           on (set by hand)") == 5, "right after the fixed rows"
    assert sum(line.startswith("night") for line in lines) == 1


def test_status_without_night_has_no_night_line() -> None:
    assert "night" not in format_status(status_reply())


def test_status_escapes_a_night_text_with_control_characters() -> None:
    text = format_status(status_reply(night="off\x1b[2J"))
    assert "\x1b" not in text


def test_the_night_result_prints_the_new_state() -> None:
    assert format_result("night", {"ok": True, "night": "off (by the schedule)"}) == "night: off (by the schedule)"
