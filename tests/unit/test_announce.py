"""`ctl say`: an announcement waits for a quiet moment, never cuts a conversation, and is dropped when stale."""

from __future__ import annotations

import pytest

from appliance.app.announce import MAX_TEXT_CHARS, Announcements, prompt_for


def test_an_idle_online_box_speaks_at_once() -> None:
    line = Announcements()
    item = line.request("  The washing machine\nis done ", 0.0, online=True)
    assert item.text == "The washing machine is done"
    assert line.due(0.1, idle=True, online=True) is item and item.state == "speaking"
    line.finished(item, spoken=True)
    assert line.describe() == [{"text": "The washing machine is done", "state": "spoken"}]


def test_during_a_conversation_it_waits_then_speaks_when_idle() -> None:
    line = Announcements(wait_s=60)
    item = line.request("Dinner is ready", 0.0, online=True)
    assert line.due(10.0, idle=False, online=True) is None and item.state == "waiting"
    assert line.next_deadline() == 60.0
    assert line.due(30.0, idle=True, online=True) is item


def test_a_conversation_that_goes_on_too_long_drops_it_with_the_reason() -> None:
    line = Announcements(wait_s=60)
    item = line.request("The oven is hot", 0.0, online=True)
    assert line.due(61.0, idle=True, online=True) is None
    assert item.state == "dropped" and "busy for more than 60 s" in item.why


def test_offline_it_is_refused_at_once_and_status_says_why() -> None:
    line = Announcements()
    item = line.request("The door is open", 0.0, online=False)
    assert item.state == "dropped" and item.why.startswith("offline")
    assert line.due(1.0, idle=True, online=True) is None
    assert line.describe()[-1]["state"] == "dropped"


def test_bad_text_and_a_runaway_script_are_refused_in_one_line() -> None:
    line = Announcements(max_waiting=2)
    for text in ("", "   ", "x" * (MAX_TEXT_CHARS + 1), "bell\x07"):
        with pytest.raises(ValueError):
            line.request(text, 0.0, online=True)
    line.request("one", 0.0, online=True)
    line.request("two", 0.0, online=True)
    with pytest.raises(ValueError, match="already waiting"):
        line.request("three", 0.0, online=True)


def test_the_prompt_asks_for_exactly_the_sentence() -> None:
    assert prompt_for("The washing machine is done").endswith(": The washing machine is done")
    assert "word for word" in prompt_for("x")


def test_ctl_say_sends_the_words_as_one_sentence_and_the_server_checks_the_shape() -> None:
    from appliance.ipc.ctl import command_fields
    from appliance.ipc.server import validate_request
    from appliance.ipc.wire import CommandError

    assert command_fields("say", ["The", "washing", "machine", "is", "done"]) == {"text": "The washing machine is done"}
    with pytest.raises(CommandError, match="sentence"):
        command_fields("say", [])
    assert validate_request({"cmd": "say", "text": "Dinner"}) == ("say", {"text": "Dinner"})
    for bad in ({"cmd": "say"}, {"cmd": "say", "text": 5}, {"cmd": "say", "text": "x", "loud": True}):
        with pytest.raises(CommandError, match='takes only "text"'):
            validate_request(bad)
