"""`appliance ctl` reads plain command lines without argparse; it must read them as argparse does."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cli import build_ctl_only_parser
from appliance.ipc.ctl import parse_quickly
from appliance.ipc.wire import KNOWN_COMMANDS


def by_argparse(words: list[str]) -> dict[str, Any] | None:
    """argparse's namespace as a dict, or None where it refuses the line."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(build_ctl_only_parser().parse_args(words))
    except SystemExit:
        return None


@pytest.mark.parametrize("words", [
    ["ctl", "status"],
    ["--config", "/etc/appliance/config.toml", "ctl", "status"],
    ["--config=/tmp/c.toml", "--set", "control.socket=/run/a.sock", "--set=live.voice=Puck", "ctl", "timers"],
    ["--log-level", "debug", "ctl", "volume", "-5"],
    ["ctl", "volume", "+10", "--json"],
    ["ctl", "--json", "night", "auto", "--socket", "/run/appliance/control.sock"],
    ["ctl", "press", "--socket=/tmp/x.sock", "--socket", "/tmp/y.sock"],
    ["--set", "ctl", "ctl", "status"],
    ["ctl", "status", "extra"],
    ["--config=", "ctl", "new-conversation"],
])
def test_plain_lines_read_as_argparse_reads_them(words: list[str]) -> None:
    quick = parse_quickly(words)
    assert quick is not None
    assert vars(quick) == by_argparse(words)


@pytest.mark.parametrize("words", [
    ["ctl", "--help"], ["-h", "ctl", "status"], ["ctl", "statu"], ["ctl"], ["--conf", "x", "ctl", "status"],
    ["ctl", "status", "--sock", "/x"], ["ctl", "volume", "-inf"], ["--log-level", "loud", "ctl", "status"],
    ["ctl", "status", "--config", "x"], ["--config", "--set", "ctl", "status"], ["ctl", "--", "status"],
    ["ctl", "volume", "--json", "5"],  # argparse takes the words in one run: the 5 would be refused
])
def test_anything_unusual_is_left_to_argparse(words: list[str]) -> None:
    assert parse_quickly(words) is None


WORDS = st.sampled_from([
    "ctl", "status", "volume", "night", "press", "-5", "+5", "-.5", "5", "on", "--json", "--socket", "--socket=/s",
    "/s", "--config", "--config=/c", "--set", "--set=a.b=c", "a.b=c", "--log-level", "info", "-x", "--", "-h",
    *KNOWN_COMMANDS,
])


@settings(max_examples=1500, deadline=None)
@given(st.lists(WORDS, max_size=7))
def test_whenever_the_quick_reader_answers_argparse_agrees(words: list[str]) -> None:
    quick = parse_quickly(words)
    if quick is not None:
        assert vars(quick) == by_argparse(words)
