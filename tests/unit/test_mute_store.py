"""The mute's pieces that need no sound card: the remembered mute, the setting that times the hold,
what the control socket accepts for it, and how the answer reads in a terminal."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from appliance.app.mute import MUTE_FILE, MuteStore, MuteSwitch
from appliance.app.reload import Effect, effect_of
from appliance.ipc.format import format_result, format_status
from appliance.ipc.server import validate_request
from appliance.ipc.wire import KNOWN_COMMANDS, CommandError
from appliance.settings.errors import ConfigError
from appliance.settings.loader import load_config

# --------------------------------------------------------------------------- the remembered mute


def test_the_mute_survives_in_the_state_directory_and_can_be_lifted(tmp_path: Path) -> None:
    store = MuteStore(tmp_path / "state")
    assert store.load() is False  # a box that was never muted
    store.save(True)
    assert MuteStore(tmp_path / "state").load() is True  # as the next start reads it
    store.save(False)
    assert MuteStore(tmp_path / "state").load() is False
    assert [p.name for p in (tmp_path / "state").iterdir()] == [MUTE_FILE], "no temporary file left behind"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "is not JSON"),
        (b'{"muted": tru', "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b'{"muted": "yes"}', 'no "muted": true or false'),
        (b'{"muted": 1}', 'no "muted": true or false'),
        (b"[true]", 'no "muted": true or false'),
        (b"{}", 'no "muted": true or false'),
    ],
)
def test_a_corrupt_file_means_not_muted_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, why: str
) -> None:
    (tmp_path / MUTE_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="appliance.app.mute"):
        assert MuteStore(tmp_path).load() is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and why in lines[0] and "starting unmuted" in lines[0], lines


def test_a_file_that_is_not_a_regular_file_is_not_waited_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.mkfifo(tmp_path / MUTE_FILE)  # opening it for reading would block until a writer came
    with caplog.at_level(logging.WARNING, logger="appliance.app.mute"):
        assert MuteStore(tmp_path).load() is False
    assert len(caplog.records) == 1 and "FIFO" in caplog.records[0].getMessage()


def test_an_unreadable_file_means_not_muted_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / MUTE_FILE).mkdir()  # even root cannot read a directory as a file
    with caplog.at_level(logging.WARNING, logger="appliance.app.mute"):
        assert MuteStore(tmp_path).load() is False
    assert len(caplog.records) == 1 and "directory" in caplog.records[0].getMessage()


def test_a_state_directory_that_cannot_be_written_is_an_oserror_for_the_caller(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    with pytest.raises(OSError):
        MuteStore(tmp_path / "state").save(True)


# --------------------------------------------------------------------------- the switch


class FakeMicrophone:
    """FAKE of Capture's stream switching: records what was asked of it, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.open = True

    def stop(self) -> None:
        self.calls.append("stop")
        self.open = False

    async def start_async(self, *, allow_missing: bool = True) -> None:
        await asyncio.sleep(0)  # as a real reopen, it takes a while on a worker thread
        self.calls.append("start")
        self.open = True


class Flag:
    """The conductor's side: the flag, and the reasons it was told."""

    def __init__(self) -> None:
        self.muted = False
        self.told: list[tuple[bool, str, bool]] = []

    def set_muted(self, muted: bool, reason: str, *, announce: bool = True) -> None:
        self.told.append((muted, reason, announce))
        self.muted = muted


def test_a_mute_closes_the_microphone_and_is_saved_before_its_task_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        mic, flag = FakeMicrophone(), Flag()
        switch = MuteSwitch(MuteStore(tmp_path), mic, flag)
        task = switch.switch(True, "ctl")
        assert flag.muted, "the conductor (and the light) hear of it at once"
        await task
        assert mic.calls == ["stop"] and not mic.open and switch.mic_closed
        assert MuteStore(tmp_path).load() is True
        await switch.switch(False, "ctl")
        assert mic.calls == ["stop", "start"] and mic.open
        assert MuteStore(tmp_path).load() is False

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_quick_toggles_end_where_the_last_one_left_things(tmp_path: Path) -> None:
    async def scenario() -> None:
        mic, flag = FakeMicrophone(), Flag()
        switch = MuteSwitch(MuteStore(tmp_path), mic, flag)
        for muted in (True, False, True, False, True):
            switch.switch(muted, "held")
        await switch.finish()
        assert flag.muted and not mic.open and MuteStore(tmp_path).load() is True
        assert mic.calls[-1] == "stop"

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_remembered_mute_is_restored_quietly_and_keeps_the_microphone_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        MuteStore(tmp_path).save(True)
        mic, flag = FakeMicrophone(), Flag()
        switch = MuteSwitch(MuteStore(tmp_path), mic, flag)
        assert await switch.restore() is True
        assert flag.told == [(True, "muted before this start", False)] and switch.mic_closed
        await switch.switch(False, "ctl")
        assert mic.calls == ["start"], "unmuting opens the microphone the start left closed"
        fresh = MuteSwitch(MuteStore(tmp_path), FakeMicrophone(), Flag())
        assert await fresh.restore() is False and not fresh.mic_closed

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_mute_that_cannot_be_saved_still_closes_the_microphone_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")

    async def scenario() -> FakeMicrophone:
        mic = FakeMicrophone()
        await MuteSwitch(MuteStore(tmp_path / "state"), mic, Flag()).switch(True, "ctl")
        return mic

    with caplog.at_level(logging.WARNING, logger="appliance.app.mute"):
        mic = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert not mic.open
    assert [r.getMessage() for r in caplog.records if "cannot save the mute" in r.getMessage()] != []
    assert len(caplog.records) == 1


# --------------------------------------------------------------------------- the hold that mutes


def test_the_mute_hold_is_ten_seconds_and_must_outlast_the_long_hold() -> None:
    assert load_config(env={}).button.mute_hold_s == 10.0
    assert load_config(env={}, overrides=["button.mute_hold_s=6"]).button.mute_hold_s == 6.0
    with pytest.raises(ConfigError, match=r"button\.mute_hold_s.*must be more than button\.long_hold_s \(5\)"):
        load_config(env={}, overrides=["button.mute_hold_s=5"])
    with pytest.raises(ConfigError, match=r"button\.mute_hold_s.*long_hold_s \(8\)"):
        load_config(env={}, overrides=["button.long_hold_s=8", "button.mute_hold_s=7"])


def test_a_new_mute_hold_needs_a_restart_like_the_other_button_settings() -> None:
    assert effect_of("button.mute_hold_s") is Effect.RESTART


# --------------------------------------------------------------------------- the control socket


def test_mute_is_a_known_command_and_the_server_takes_true_or_false() -> None:
    assert "mute" in KNOWN_COMMANDS
    assert validate_request({"cmd": "mute", "muted": True}) == ("mute", {"muted": True})
    assert validate_request({"cmd": "mute", "muted": False}) == ("mute", {"muted": False})


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"cmd": "mute"}, 'needs "muted"'),
        ({"cmd": "mute", "muted": "on"}, "got 'on'"),
        ({"cmd": "mute", "muted": 1}, "got 1"),
        ({"cmd": "mute", "muted": None}, "got None"),
        ({"cmd": "mute", "muted": True, "for_s": 60}, "not: for_s"),
        ({"cmd": "mute", "mode": "on"}, "not: mode"),
    ],
)
def test_a_bad_mute_request_is_refused_in_one_line_that_says_what_to_send(request_: dict, fragment: str) -> None:
    with pytest.raises(CommandError) as caught:
        validate_request(request_)
    message = str(caught.value)
    assert fragment in message and '{"cmd": "mute", "muted": true}' in message and "\n" not in message


def test_the_mute_answer_and_the_status_say_muted_yes_or_no() -> None:
    assert format_result("mute", {"ok": True, "muted": True, "state": "muted"}) == "muted: yes (state muted)"
    assert format_result("mute", {"ok": True, "muted": False, "state": "idle"}) == "muted: no (state idle)"
    status = {"ok": True, "state": "muted", "connection": "connected", "volume": 40, "muted": True,
              "last_error": None}
    lines = format_status(status).splitlines()
    assert "muted:           yes" in lines
    assert sum(line.startswith("muted") for line in lines) == 1
    assert lines.index("muted:           yes") == lines.index("volume:          40%") + 1
