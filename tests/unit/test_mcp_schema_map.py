"""MCP tool schemas (Home Assistant's and the SDK's) as Live API declarations."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.emulator.config import EmulatorConfig
from appliance.emulator.rejections import ProtocolViolation
from appliance.emulator.setup_message import read_setup
from appliance.live import messages as p
from appliance.live.profiles import profile_for
from appliance.mcp.schema_map import (
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_NODES,
    MAX_PROPERTY_DESCRIPTION,
    Unmappable,
    assign_names,
    function_name,
    map_parameters,
    short_description,
)

# What Home Assistant's MCP server lists: voluptuous schemas converted to JSON Schema, with
# only "type" and "properties" kept at the top (no "required").
HASS_TURN_ON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "floor": {"type": "string"},
        "domain": {"type": "array", "items": {"type": "string", "enum": ["light", "switch", "fan"]}},
        "device_class": {"type": "array", "items": {"type": "string", "enum": ["outlet", "switch"]}},
    },
}
HASS_LIGHT_SET = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "color": {"type": "string"},
        "temperature": {"type": "integer", "minimum": 0},
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100,
                       "description": "The brightness percentage of the light between 0 and 100"},
    },
}
HASS_LIST_ADD_ITEM = {
    "type": "object",
    "properties": {
        "item": {"type": "string", "description": "The item to add to the list"},
        "name": {"type": "string", "description": "The name of the list"},
    },
}
GET_LIVE_CONTEXT = {"type": "object", "properties": {}}
# What the SDK's own server writes for `def add_item(item: str, list_name: str = "shopping", due: date | None = None)`
SDK_TODO_ADD = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "add_itemArguments",
    "additionalProperties": False,
    "properties": {
        "item": {"title": "Item", "type": "string"},
        "list_name": {"title": "List Name", "type": "string", "default": "shopping"},
        "due": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": None, "title": "Due"},
    },
    "required": ["item"],
}


def test_home_assistant_turn_on_keeps_every_argument_in_the_api_subset() -> None:
    mapped = map_parameters(HASS_TURN_ON)
    assert mapped.dropped == ()
    assert mapped.parameters == {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "area": {"type": "STRING"},
            "floor": {"type": "STRING"},
            "domain": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["light", "switch", "fan"]}},
            "device_class": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["outlet", "switch"]}},
        },
    }


def test_ranges_and_descriptions_survive() -> None:
    brightness = map_parameters(HASS_LIGHT_SET).parameters["properties"]["brightness"]
    assert brightness == {"type": "INTEGER", "minimum": 0, "maximum": 100,
                          "description": "The brightness percentage of the light between 0 and 100."}
    todo = map_parameters(HASS_LIST_ADD_ITEM).parameters
    assert todo["properties"]["item"] == {"type": "STRING", "description": "The item to add to the list."}
    assert "required" not in todo


def test_a_tool_without_arguments_declares_no_parameters() -> None:
    # the API refuses an OBJECT with no properties
    assert map_parameters(GET_LIVE_CONTEXT).parameters is None
    assert map_parameters(None).parameters is None
    assert map_parameters({"type": "object"}).parameters is None


def test_the_sdks_schema_loses_what_the_api_would_refuse() -> None:
    params = map_parameters(SDK_TODO_ADD).parameters
    assert params == {
        "type": "OBJECT",
        "properties": {
            "item": {"type": "STRING"},
            "list_name": {"type": "STRING"},
            "due": {"type": "STRING", "format": "date", "nullable": True},
        },
        "required": ["item"],
    }


def test_mapped_schemas_pass_the_emulators_strict_setup_check_and_raw_ones_do_not() -> None:
    def setup_with(parameters: dict) -> dict:
        function = {"name": "tool", "description": "A tool.", "parameters": parameters}
        settings = p.SessionSettings(model="gemini-3.8-live", functions=(function,))
        return p.build_setup(settings, profile_for("gemini-3.8-live"))

    for schema in (HASS_TURN_ON, HASS_LIGHT_SET, SDK_TODO_ADD, NESTED):
        read_setup(setup_with(map_parameters(schema).parameters), "v1beta", EmulatorConfig())
    with pytest.raises(ProtocolViolation, match="additionalProperties|schema"):
        read_setup(setup_with(SDK_TODO_ADD), "v1beta", EmulatorConfig())


NESTED = {
    "type": "object",
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "minutes": {"type": "integer", "enum": [1, 5, 10]}},
            "required": ["text"],
        },
        "Node": {"type": "object", "properties": {"label": {"type": "string"}, "child": {"$ref": "#/$defs/Node"}}},
    },
    "properties": {
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
        "first": {"allOf": [{"$ref": "#/$defs/Step"}], "description": "The first step"},
        "tree": {"$ref": "#/$defs/Node"},
        "remote": {"$ref": "https://example.com/schema.json"},
        "either": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    },
}


def test_references_are_inlined_cycles_cut_and_outside_references_dropped() -> None:
    mapped = map_parameters(NESTED)
    props = mapped.parameters["properties"]
    step = {"type": "OBJECT", "required": ["text"], "properties": {
        "text": {"type": "STRING"}, "minutes": {"type": "INTEGER", "description": "One of: 1, 5, 10."}}}
    assert props["steps"] == {"type": "ARRAY", "items": step}
    assert props["first"] == {**step, "description": "The first step."}
    assert props["tree"] == {"type": "OBJECT", "properties": {"label": {"type": "STRING"}}}
    assert "remote" not in props
    assert props["either"] == {"type": "INTEGER"}  # the first branch that maps
    assert any("tree.child" in note and "itself" in note for note in mapped.dropped)
    assert any("remote" in note and "outside" in note for note in mapped.dropped)


def test_an_argument_the_api_cannot_take_is_dropped_unless_it_is_required() -> None:
    schema = {"type": "object", "properties": {"entity-id": {"type": "string"}, "free": {}, "area": {"type": "string"}}}
    mapped = map_parameters(schema)
    assert list(mapped.parameters["properties"]) == ["area"]
    assert len(mapped.dropped) == 2
    with pytest.raises(Unmappable, match='required argument "entity-id"'):
        map_parameters({**schema, "required": ["entity-id"]})
    with pytest.raises(Unmappable, match="not an object"):
        map_parameters({"type": "string"})


def test_optional_arguments_that_all_drop_leave_a_tool_without_parameters() -> None:
    mapped = map_parameters({"type": "object", "properties": {"blob": {"type": "object"}}})
    assert mapped.parameters is None
    assert mapped.dropped


def test_depth_and_size_are_bounded() -> None:
    deep: dict = {"type": "string"}
    for level in range(12):
        deep = {"type": "object", "properties": {f"level{level}": deep, "keep": {"type": "string"}}}
    mapped = map_parameters(deep)
    depth, node = 0, mapped.parameters
    while "properties" in node and any(v.get("type") == "OBJECT" for v in node["properties"].values()):
        node = next(v for v in node["properties"].values() if v.get("type") == "OBJECT")
        depth += 1
    assert depth <= 6 and any("deep" in note for note in mapped.dropped)

    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(MAX_NODES * 3)}}
    kept = map_parameters(wide)
    assert len(kept.parameters["properties"]) == MAX_NODES
    assert [note for note in kept.dropped] == [f"p{MAX_NODES} and what follows: the schema is too large"]


def test_nullable_spellings() -> None:
    props = map_parameters({"type": "object", "properties": {
        "a": {"type": ["integer", "null"]},
        "b": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        "c": {"type": "number", "nullable": True},
    }}).parameters["properties"]
    assert props == {"a": {"type": "INTEGER", "nullable": True}, "b": {"type": "BOOLEAN", "nullable": True},
                     "c": {"type": "NUMBER", "nullable": True}}


def test_descriptions_are_one_short_line() -> None:
    long = ("Turns on/opens/presses a device or entity. For locks, this performs a 'lock' action.\n\n"
            "Opens covers and garage doors. " + "Also many other things are covered here. " * 10)
    short = short_description(long)
    assert len(short) <= MAX_DESCRIPTION and "\n" not in short
    assert short.startswith("Turns on/opens/presses a device or entity. For locks")
    assert short.endswith(".")  # cut at a sentence
    assert short_description("a\x1b[31mred\x07 word") == "a [31mred word"
    words = short_description("word " * 100, 50)
    assert len(words) <= 50 and words.endswith("…")
    prop = map_parameters({"type": "object", "properties": {"x": {"type": "string", "description": long}}})
    assert len(prop.parameters["properties"]["x"]["description"]) <= MAX_PROPERTY_DESCRIPTION


VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


def test_function_names_are_made_valid() -> None:
    assert function_name("HassTurnOn") == "HassTurnOn"
    assert function_name("todo.add item") == "todo_add_item"
    assert function_name("1st-tool") == "_1st-tool"
    assert function_name("") == "tool"
    assert len(function_name("x" * 200)) == MAX_NAME


def test_names_get_the_servers_prefix_only_where_they_clash() -> None:
    names = assign_names(
        [("home", "HassTurnOn"), ("office", "HassTurnOn"), ("home", "GetLiveContext"), ("home", "set_timer")],
        reserved={"set_timer", "get_time"},
    )
    assert names == {("home", "HassTurnOn"): "home_HassTurnOn", ("office", "HassTurnOn"): "office_HassTurnOn",
                     ("home", "GetLiveContext"): "GetLiveContext", ("home", "set_timer"): "home_set_timer"}


@given(st.lists(st.tuples(st.sampled_from(["home", "office", "a"]), st.text(max_size=80)), max_size=30, unique=True),
       st.sets(st.text(alphabet="abc_", min_size=1, max_size=8), max_size=5))
def test_assigned_names_are_always_valid_and_unique(tools: list[tuple[str, str]], reserved: set[str]) -> None:
    names = assign_names(tools, reserved)
    assert set(names) == set(tools)
    assert len(set(names.values())) == len(tools)
    assert not set(names.values()) & reserved
    assert all(VALID_NAME.fullmatch(name) for name in names.values())
