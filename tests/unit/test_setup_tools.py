"""`setup.tools`: the device's fixed declarations, a source asked again at every setup (the MCP
servers' tools), and the `behavior` each declaration gets on each model."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.live import messages as p
from appliance.live.from_config import session_settings
from appliance.live.profiles import known_models, profile_for
from appliance.settings.schema import Config

GET_TIME = {"name": "get_time", "description": "The time now."}
SET_TIMER = {
    "name": "set_timer",
    "description": "Start a kitchen timer.",
    "parameters": {"type": "OBJECT", "properties": {"seconds": {"type": "INTEGER"}}, "required": ["seconds"]},
}
LIGHT_ON = {
    "name": "HassTurnOn",
    "description": "Turn a device on.",
    "parameters": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}},
}
SLOW = {"name": "HassMediaSearch", "description": "Search the media library.", "behavior": "NON_BLOCKING"}


def declarations(settings: p.SessionSettings) -> list[dict[str, Any]]:
    tools = p.build_setup(settings, profile_for(settings.model))["setup"].get("tools", [])
    return [decl for tool in tools for decl in tool.get("functionDeclarations", [])]


def names(settings: p.SessionSettings) -> list[str]:
    return [decl["name"] for decl in declarations(settings)]


class Source:
    """A source whose answer the test changes between setups, as a server coming up would."""

    def __init__(self, *answer: dict[str, Any]) -> None:
        self.answer = list(answer)
        self.asked = 0

    def __call__(self) -> list[dict[str, Any]]:
        self.asked += 1
        return list(self.answer)


def test_without_a_source_the_devices_tools_are_declared_as_before() -> None:
    settings = p.SessionSettings(model="gemini-3.8-live", functions=(GET_TIME, SET_TIMER))
    assert declarations(settings) == [
        {"name": "get_time", "description": "The time now.", "behavior": "BLOCKING"},
        {**SET_TIMER, "behavior": "BLOCKING"},
    ]


def test_the_source_is_asked_at_every_setup_so_a_later_list_reaches_the_next_session() -> None:
    source = Source()
    settings = p.SessionSettings(model="gemini-3.8-live", functions=(GET_TIME,), function_source=source)
    assert names(settings) == ["get_time"]  # the server is not up yet
    source.answer = [LIGHT_ON]
    assert names(settings) == ["get_time", "HassTurnOn"]
    source.answer = []
    assert names(settings) == ["get_time"]  # and gone again when the server went
    assert source.asked == 3


def test_a_name_already_declared_is_left_out_and_the_devices_own_wins() -> None:
    impostor = {"name": "set_timer", "description": "Someone else's timer."}
    settings = p.SessionSettings(model="gemini-3.8-live", functions=(SET_TIMER,),
                                 function_source=Source(impostor, LIGHT_ON, LIGHT_ON))
    decls = declarations(settings)
    assert [d["name"] for d in decls] == ["set_timer", "HassTurnOn"]
    assert decls[0]["description"] == "Start a kitchen timer."


@pytest.mark.parametrize(("model", "own", "others"), [
    ("gemini-3.8-live", "NON_BLOCKING", "BLOCKING"),
    ("gemini-3.8-live-extended-thinking", "NON_BLOCKING", "NON_BLOCKING"),
    ("gemini-2.5-flash-native-audio-preview-12-2025", "NON_BLOCKING", "BLOCKING"),
    ("gemini-3.1-flash-live-preview", None, None),  # synchronous calls only: no behavior at all
    ("gemini-9-live-from-the-future", None, None),  # unknown: only what every model takes
])
def test_a_declaration_may_ask_for_non_blocking_where_the_model_has_async_calls(
        model: str, own: str | None, others: str | None) -> None:
    settings = p.SessionSettings(model=model, functions=(SET_TIMER,), function_source=Source(SLOW, LIGHT_ON))
    behaviors = {d["name"]: d.get("behavior") for d in declarations(settings)}
    assert behaviors == {"set_timer": others, "HassMediaSearch": own, "HassTurnOn": others}


def test_every_known_model_has_a_rule_for_a_declarations_own_behavior() -> None:
    allowed = {m for m in known_models() if profile_for(m).non_blocking_tools}
    assert allowed == {"gemini-3.8-live", "gemini-3.8-live-extended-thinking",
                       "gemini-2.5-flash-native-audio-preview-12-2025"}


def test_a_declaration_cannot_make_itself_blocking_where_every_call_is_async() -> None:
    blocking = {**LIGHT_ON, "behavior": "BLOCKING"}
    settings = p.SessionSettings(model="gemini-3.8-live-extended-thinking", function_source=Source(blocking))
    assert [d["behavior"] for d in declarations(settings)] == ["NON_BLOCKING"]  # else a 1007 close


def test_the_sources_declarations_count_for_google_search_on_a_model_that_cannot_mix_them() -> None:
    alone = p.SessionSettings(model="gemini-3.1-flash-live-preview", google_search=True)
    mixed = p.SessionSettings(model="gemini-3.1-flash-live-preview", google_search=True,
                              function_source=Source(LIGHT_ON))

    def tool_kinds(settings: p.SessionSettings) -> list[str]:
        return [key for tool in p.build_setup(settings, profile_for(settings.model))["setup"]["tools"] for key in tool]

    assert tool_kinds(alone) == ["googleSearch"]
    assert tool_kinds(mixed) == ["functionDeclarations"]


def test_the_session_from_the_config_keeps_the_source() -> None:
    source = Source(LIGHT_ON)
    settings = session_settings(Config(), functions=(GET_TIME,), function_source=source)
    assert names(settings) == ["get_time", "HassTurnOn"]
    assert session_settings(Config(), functions=(GET_TIME,)).function_source is None


@pytest.mark.parametrize("model", [*known_models(), "gemini-9-live-from-the-future"])
def test_effective_behavior_is_what_the_setup_declared(model: str) -> None:
    """The tool router asks `effective_behavior` whether the model waits for a home call: its answer
    must be the `behavior` the setup sent for that name, on every model (3.1: none at all)."""
    settings = p.SessionSettings(model=model, functions=(SET_TIMER,), function_source=Source(SLOW, LIGHT_ON))
    sent = {d["name"]: d.get("behavior") for d in declarations(settings)}
    asked = {fn["name"]: p.effective_behavior(fn, profile_for(model)) for fn in (SET_TIMER, SLOW, LIGHT_ON)}
    assert asked == sent
    if model == "gemini-3.1-flash-live-preview":
        assert set(sent.values()) == {None}  # synchronous calls only: the slow tool is an ordinary call
