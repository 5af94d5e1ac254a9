"""The function tools as the model sees them: tool calls in, one answer per call out, never a crash.

Every answer is checked against the google-genai `FunctionResponse` model and serialised through
`tool_response`, and every declaration against `FunctionDeclaration`, so what we send is what the
API accepts.  Timers run on a real asyncio loop with a fake wall clock and a 10 ms check interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.genai import types

from appliance.settings.schema import Config, PrivacyConfig, TimersConfig, ToolsConfig
from appliance.live.profiles import profile_for
from appliance.live.messages import (
    FunctionCall,
    FunctionResponse,
    SessionSettings,
    ToolCall,
    build_setup,
    tool_response,
)
from appliance.tools.catalog import ALL_TOOLS, registry_for
from appliance.tools.registry import MAX_REMEMBERED_CALLS, Tool, ToolContext, ToolError, ToolRegistry
from appliance.timers.model import Timer
from appliance.timers.service import TimerService
from appliance.timers.store import TIMERS_FILE, TimerStore

WAIT = 3.0
BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 11, 22, 14, 3, 0, tzinfo=BERLIN).timestamp()  # a Sunday afternoon


class Volume:
    """The daemon's speaker volume, as the tools see it."""

    def __init__(self, level: int = 50) -> None:
        self.level = level

    def get(self) -> int:
        return self.level

    def set(self, level: int) -> None:
        assert isinstance(level, int) and 0 <= level <= 100
        self.level = level


class Env:
    """A registry over a real TimerService (tmp state dir, fake clocks) and a fake volume."""

    def __init__(self, state: Path, *, timers_cfg: TimersConfig | None = None,
                 enabled: tuple[str, ...] | None = None) -> None:
        self.wall = START
        self.mono = 100.0
        self.volume = Volume()
        self.rang = asyncio.Event()
        self.service = TimerService(
            TimerStore(state / TIMERS_FILE),
            timers_cfg or TimersConfig(),
            asyncio.get_running_loop(),
            wall=lambda: self.wall,
            monotonic=lambda: self.mono,
            on_ring=self._on_ring,
            check_interval_s=0.01,
        )
        self.service.start()
        self.ctx = ToolContext(
            timers=self.service,
            get_volume=self.volume.get,
            set_volume=self.volume.set,
            time_zone=BERLIN,
            now=lambda: datetime.fromtimestamp(self.wall, timezone.utc),
        )
        cfg = Config() if enabled is None else Config(tools=ToolsConfig(enabled=enabled))
        self.registry = registry_for(cfg, self.ctx)
        self._ids = 0

    def _on_ring(self, timer: Timer) -> None:
        self.rang.set()

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    async def ringing(self) -> None:
        await asyncio.wait_for(self.rang.wait(), WAIT)
        self.rang.clear()

    def call(self, name: str, args: Mapping[str, Any] | None = None, *, call_id: str | None = None) -> dict[str, Any]:
        """One function call; returns its `response` after checking the answer's shape."""
        self._ids += 1
        call_id = call_id or f"fc-{self._ids}"
        [answer] = answers(self.registry, [FunctionCall(call_id, name, dict(args or {}))])
        assert (answer.id, answer.name) == (call_id, name)
        return dict(answer.response)

    def output(self, name: str, args: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.call(name, args, **kw)
        assert "output" in response, response
        return response["output"]

    def error(self, name: str, args: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.call(name, args, **kw)
        assert set(response) == {"error"}, response
        error = response["error"]
        assert isinstance(error["code"], str) and error["message"] and error["retryable"] is False
        assert "\n" not in error["message"]
        return error


def answers(registry: ToolRegistry, calls: list[FunctionCall]) -> list[FunctionResponse]:
    """Run a toolCall; every answer must be a valid FunctionResponse and serialise to a toolResponse."""
    responses = registry.handle(ToolCall(tuple(calls)))
    for r in responses:
        types.FunctionResponse.model_validate({"id": r.id, "name": r.name, "response": dict(r.response)})
    if responses:
        json.loads(json.dumps(tool_response(responses), allow_nan=False))
    return responses


def with_env(tmp_path: Path, body: Callable[[Env], Any], **kw: Any) -> None:
    """Run `body(env)` (plain or async) on a fresh loop with a started timer service."""

    async def scenario() -> None:
        env = Env(tmp_path, **kw)
        try:
            result = body(env)
            if asyncio.iscoroutine(result):
                await result
        finally:
            env.service.stop()
            await env.service.flush()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- set_timer


def test_set_timer_starts_a_timer_and_says_when_it_ends(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        out = env.output("set_timer", {"seconds": 300, "label": "eggs"})
        assert out == {
            "status": "started", "id": "t1", "label": "eggs", "duration_s": 300,
            "ends_at": "14:08:00", "timers_running": 1,
        }
        out = env.output("set_timer", {"seconds": 60})
        assert out["id"] == "t2" and out["label"] == "timer" and out["timers_running"] == 2
        out = env.output("set_timer", {"seconds": 12 * 3600, "label": "dough"})
        assert (out["ends_at"], out["ends_on"]) == ("02:03:00", "Monday 23 November")
        assert [t.label for t in env.service.list()] == ["timer", "eggs", "dough"]

    with_env(tmp_path, body)


def test_set_timer_duplicate_label_gets_a_number_and_a_note(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 300, "label": "eggs"})
        out = env.output("set_timer", {"seconds": 420, "label": "Eggs"})
        assert out["label"] == "Eggs 2"
        assert "Eggs 2" in out["note"]

    with_env(tmp_path, body)


@pytest.mark.parametrize("seconds", [300, 300.0, "300", " 300 ", "300.0"])
def test_set_timer_accepts_whole_numbers_in_any_json_form(tmp_path: Path, seconds: Any) -> None:
    def body(env: Env) -> None:
        assert env.output("set_timer", {"seconds": seconds})["duration_s"] == 300

    with_env(tmp_path, body)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        ({"seconds": "abc"}, "'seconds' must be a whole number"),
        ({"seconds": -5}, "from 1 to 86400"),
        ({"seconds": 0}, "from 1 to 86400"),
        ({"seconds": 1e9}, "at most 86400"),
        ({"seconds": math.nan}, "'seconds' must be a whole number"),
        ({"seconds": math.inf}, "'seconds' must be a whole number"),
        ({"seconds": 2.5}, "'seconds' must be a whole number"),
        ({"seconds": True}, "'seconds' must be a whole number"),
        ({"seconds": [300]}, "'seconds' must be a whole number, not a list"),
        ({}, "missing required argument 'seconds'"),
        ({"seconds": None}, "missing required argument 'seconds'"),
        ({"seconds": 60, "label": 123}, "'label' must be a string"),
        ({"seconds": 60, "label": ["eggs"]}, "'label' must be a string"),
        ({"seconds": 60, "minutes": 5}, "unknown argument 'minutes'; allowed: seconds, label"),
        ({"seconds": 60, "label": "All"}, "cannot be \"all\""),
    ],
    ids=["abc", "negative", "zero", "1e9", "nan", "inf", "fraction", "bool", "list", "missing", "null",
         "label-int", "label-list", "unknown-arg", "label-all"],
)
def test_set_timer_bad_arguments_are_answered_not_run(tmp_path: Path, args: dict[str, Any], mentions: str) -> None:
    def body(env: Env) -> None:
        error = env.error("set_timer", args, call_id="fc-bad")
        assert error["code"] == "bad_arguments"
        assert mentions in error["message"]
        assert env.service.list() == []

    with_env(tmp_path, body)


def test_set_timer_limit_follows_the_config(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        error = env.error("set_timer", {"seconds": 3601})
        assert error["code"] == "bad_arguments" and "at most 3600" in error["message"]
        assert env.output("set_timer", {"seconds": 3600})["duration_s"] == 3600

    with_env(tmp_path, body, timers_cfg=TimersConfig(max_duration_h=1))


def test_set_timer_too_many_timers(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 60, "label": "a"})
        env.output("set_timer", {"seconds": 60, "label": "b"})
        error = env.error("set_timer", {"seconds": 60, "label": "c"})
        assert error["code"] == "too_many_timers" and "cancel one" in error["message"]
        assert len(env.service.list()) == 2

    with_env(tmp_path, body, timers_cfg=TimersConfig(max_timers=2))


def test_timer_tools_without_a_timer_service_say_so(tmp_path: Path) -> None:
    registry = ToolRegistry(list(ALL_TOOLS.values()), ToolContext())
    [answer] = answers(registry, [FunctionCall("fc-1", "set_timer", {"seconds": 60})])
    assert answer.response["error"]["code"] == "unavailable"
    [answer] = answers(registry, [FunctionCall("fc-2", "set_volume", {"level": 10})])
    assert answer.response["error"]["code"] == "unavailable"


# --------------------------------------------------------------------------- list_timers


def test_list_timers_shows_remaining_time_and_ringing_first(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        assert env.output("list_timers") == {"count": 0, "timers": [], "message": "no timers are set"}
        env.output("set_timer", {"seconds": 300, "label": "eggs"})
        env.output("set_timer", {"seconds": 60, "label": "tea"})
        env.advance(20.4)
        out = env.output("list_timers")
        assert out["count"] == 2
        assert out["timers"] == [
            {"id": "t2", "label": "tea", "state": "running", "remaining_s": 40, "ends_at": "14:04:00"},
            {"id": "t1", "label": "eggs", "state": "running", "remaining_s": 280, "ends_at": "14:08:00"},
        ]
        env.advance(40)
        await env.ringing()
        out = env.output("list_timers")
        assert [(t["label"], t["state"], t["remaining_s"]) for t in out["timers"]] == [
            ("tea", "ringing", 0), ("eggs", "running", 240)
        ]

    with_env(tmp_path, body)


def test_list_timers_takes_no_arguments(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        error = env.error("list_timers", {"label": "eggs"})
        assert error["code"] == "bad_arguments" and "takes no arguments" in error["message"]

    with_env(tmp_path, body)


# --------------------------------------------------------------------------- cancel_timer


def test_cancel_timer_by_label_ignoring_case_and_by_exact_id(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 300, "label": "Eggs"})
        env.output("set_timer", {"seconds": 600, "label": "pasta"})
        env.output("set_timer", {"seconds": 900, "label": "roast"})
        out = env.output("cancel_timer", {"timer": "eggs"})
        assert out == {"status": "cancelled", "cancelled": [{"id": "t1", "label": "Eggs", "was": "running"}],
                       "timers_left": 2}
        assert env.output("cancel_timer", {"timer": "t2"})["cancelled"][0]["label"] == "pasta"
        error = env.error("cancel_timer", {"timer": "T3"})
        assert error["code"] == "not_found"
        assert [t.label for t in env.service.list()] == ["roast"]

    with_env(tmp_path, body)


def test_cancel_timer_no_match_lists_what_exists(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 300, "label": "eggs"})
        env.output("set_timer", {"seconds": 600, "label": "pasta"})
        error = env.error("cancel_timer", {"timer": "rice"})
        assert error["code"] == "not_found"
        assert '"rice"' in error["message"] and "eggs (t1)" in error["message"] and "pasta (t2)" in error["message"]
        assert [t["label"] for t in error["timers"]] == ["eggs", "pasta"]
        assert len(env.service.list()) == 2

    with_env(tmp_path, body)


def test_cancel_timer_all(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        assert env.output("cancel_timer", {"timer": "all"})["status"] == "nothing_to_cancel"
        env.output("set_timer", {"seconds": 300, "label": "eggs"})
        env.output("set_timer", {"seconds": 600, "label": "pasta"})
        out = env.output("cancel_timer", {"timer": "ALL"})
        assert sorted(c["label"] for c in out["cancelled"]) == ["eggs", "pasta"]
        assert out["timers_left"] == 0 and env.service.list() == []

    with_env(tmp_path, body)


def test_cancel_timer_without_a_name(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        assert env.error("cancel_timer")["code"] == "not_found"
        env.output("set_timer", {"seconds": 300, "label": "eggs"})
        env.output("set_timer", {"seconds": 600, "label": "pasta"})
        error = env.error("cancel_timer")
        assert "say which one" in error["message"] and "eggs (t1)" in error["message"]
        env.output("cancel_timer", {"timer": "pasta"})
        assert env.output("cancel_timer")["cancelled"][0]["label"] == "eggs"

    with_env(tmp_path, body)


def test_cancel_timer_stops_a_ringing_timer(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 10, "label": "eggs"})
        env.output("set_timer", {"seconds": 600, "label": "pasta"})
        env.advance(10)
        await env.ringing()
        assert env.service.any_ringing
        out = env.output("cancel_timer")  # "stop the alarm": no name needed while one rings
        assert out["cancelled"] == [{"id": "t1", "label": "eggs", "was": "ringing"}]
        assert not env.service.any_ringing
        assert [t.label for t in env.service.list()] == ["pasta"]

    with_env(tmp_path, body)


def test_cancel_timer_wrong_type(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        error = env.error("cancel_timer", {"timer": 3})
        assert error["code"] == "bad_arguments" and "'timer' must be a string" in error["message"]

    with_env(tmp_path, body)


# --------------------------------------------------------------------------- get_time


def test_get_time_in_the_configured_zone(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        assert env.output("get_time") == {
            "time": "14:03",
            "date": "Sunday 22 November 2026",
            "iso": "2026-11-22T14:03:00+01:00",
            "time_zone": "Europe/Berlin",
        }
        env.ctx.time_zone = ZoneInfo("America/New_York")
        out = env.output("get_time")
        assert (out["time"], out["date"], out["time_zone"]) == ("08:03", "Sunday 22 November 2026", "America/New_York")

    with_env(tmp_path, body)


def test_get_time_without_a_zone_uses_the_system_local_time() -> None:
    moment = datetime(2026, 11, 22, 13, 3, 0, tzinfo=timezone.utc)
    registry = ToolRegistry([ALL_TOOLS["get_time"]], ToolContext(now=lambda: moment))
    [answer] = answers(registry, [FunctionCall("fc-1", "get_time", {})])
    out = answer.response["output"]
    local = moment.astimezone()
    assert out["time"] == local.strftime("%H:%M")
    assert datetime.fromisoformat(out["iso"]) == moment
    assert out["time_zone"]


# --------------------------------------------------------------------------- set_volume


def test_set_volume_absolute_and_relative(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        assert env.output("set_volume", {"level": 30}) == {"status": "set", "volume": 30, "previous": 50}
        assert env.volume.level == 30
        assert env.output("set_volume", {"step": "-10"})["volume"] == 20
        out = env.output("set_volume", {"step": 90})
        assert (out["volume"], out["previous"]) == (100, 20) and "100" in out["note"]
        assert env.volume.level == 100

    with_env(tmp_path, body)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        ({"level": 30, "step": 10}, "exactly one of 'level'"),
        ({}, "exactly one of 'level'"),
        ({"level": 101}, "'level' must be from 0 to 100"),
        ({"level": -1}, "'level' must be from 0 to 100"),
        ({"step": -101}, "'step' must be from -100 to 100"),
        ({"level": "loud"}, "'level' must be a whole number"),
        ({"level": 55.5}, "'level' must be a whole number"),
    ],
    ids=["both", "neither", "over", "under", "big-step", "word", "fraction"],
)
def test_set_volume_bad_arguments(tmp_path: Path, args: dict[str, Any], mentions: str) -> None:
    def body(env: Env) -> None:
        error = env.error("set_volume", args)
        assert error["code"] == "bad_arguments" and mentions in error["message"]
        assert env.volume.level == 50

    with_env(tmp_path, body)


# --------------------------------------------------------------------------- the registry


def test_unknown_function_is_answered_with_its_id(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        error = env.error("make_coffee", {"cups": 2}, call_id="fc-x")
        assert error["code"] == "unknown_function"
        assert "make_coffee" in error["message"] and "set_timer" in error["message"]

    with_env(tmp_path, body)


def test_several_calls_in_one_message_are_all_answered_in_order(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    def body(env: Env) -> None:
        calls = [
            FunctionCall("fc-1", "set_timer", {"seconds": 60, "label": "tea"}),
            FunctionCall(None, "set_timer", {"seconds": 90}),
            FunctionCall("fc-3", "nope", {}),
            FunctionCall("fc-4", "set_timer", {"seconds": "x"}),
            FunctionCall("fc-5", "get_time", {}),
        ]
        responses = answers(env.registry, calls)
        assert [(r.id, r.name) for r in responses] == [
            ("fc-1", "set_timer"), ("fc-3", "nope"), ("fc-4", "set_timer"), ("fc-5", "get_time")
        ]
        assert "output" in responses[0].response and "output" in responses[3].response
        assert [t.label for t in env.service.list()] == ["tea"]  # the call without an id did not run

    with caplog.at_level(logging.WARNING):
        with_env(tmp_path, body)
    assert any("has no id" in r.getMessage() for r in caplog.records)


def test_a_tool_that_raises_gets_an_error_answer(caplog: pytest.LogCaptureFixture) -> None:
    def explode(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    def refuse(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        raise ToolError("busy", "the oven is busy", retryable=True)

    registry = ToolRegistry(
        [Tool("explode", "Always fails.", None, explode), Tool("refuse", "Refuses.", None, refuse)], ToolContext()
    )
    with caplog.at_level(logging.ERROR):
        first, second = answers(registry, [FunctionCall("fc-1", "explode", {}), FunctionCall("fc-2", "refuse", {})])
    assert first.response["error"]["code"] == "internal_error"
    assert "ZeroDivisionError: division by zero" in first.response["error"]["message"]
    assert second.response == {"error": {"code": "busy", "message": "the oven is busy", "retryable": True}}
    assert any("explode" in r.getMessage() for r in caplog.records)


def test_labels_are_not_logged_unless_transcripts_may_be(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 60, "label": "secret birthday cake"})
        env.ctx.log_args = True
        env.output("set_timer", {"seconds": 60, "label": "soup"})

    with caplog.at_level(logging.DEBUG):
        with_env(tmp_path, body)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "birthday" not in text
    assert "soup" in text


def test_declarations_are_valid_for_the_api(tmp_path: Path) -> None:
    def upper_types(schema: Mapping[str, Any]) -> None:
        assert schema["type"] == schema["type"].upper()
        for prop in schema.get("properties", {}).values():
            upper_types(prop)

    def body(env: Env) -> None:
        declarations = env.registry.declarations()
        assert [d["name"] for d in declarations] == list(ALL_TOOLS)
        for declaration in declarations:
            types.FunctionDeclaration.model_validate(declaration)
            assert declaration["description"]
            params = declaration.get("parameters")
            if params is None:
                continue
            assert params["type"] == "OBJECT" and params["properties"]
            upper_types(params)
            assert set(params.get("required", ())) <= set(params["properties"])
        by_name = {d["name"]: d for d in declarations}
        assert by_name["set_timer"]["parameters"]["required"] == ["seconds"]
        assert by_name["set_timer"]["parameters"]["properties"]["seconds"]["type"] == "INTEGER"
        # No-argument tools leave `parameters` out: the API rejects an OBJECT with empty properties.
        assert "parameters" not in by_name["get_time"] and "parameters" not in by_name["list_timers"]

        setup = build_setup(SessionSettings(model="gemini-3.8-live", functions=declarations),
                            profile_for("gemini-3.8-live"))
        [tool] = setup["setup"]["tools"]
        assert [d["name"] for d in tool["functionDeclarations"]] == list(ALL_TOOLS)
        assert all(d["behavior"] == "BLOCKING" for d in tool["functionDeclarations"])
        types.Tool.model_validate(tool)

    with_env(tmp_path, body)


def test_registry_declares_and_runs_only_enabled_tools(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        assert [d["name"] for d in env.registry.declarations()] == ["get_time", "set_timer"]
        assert env.error("set_volume", {"level": 10})["code"] == "unknown_function"
        assert env.volume.level == 50
        assert env.output("set_timer", {"seconds": 60})["status"] == "started"

    with_env(tmp_path, body, enabled=("get_time", "set_timer"))


def test_context_from_config() -> None:
    cfg = Config(tools=ToolsConfig(time_zone="Asia/Tokyo"), privacy=PrivacyConfig(log_transcripts=True))
    ctx = ToolContext.from_config(cfg, timers=None, get_volume=None, set_volume=None)
    assert ctx.time_zone == ZoneInfo("Asia/Tokyo") and ctx.log_args
    assert ToolContext.from_config(Config(), timers=None, get_volume=None, set_volume=None).time_zone is None


# --------------------------------------------------------------------------- cancellation (undo)


def test_cancelled_set_timer_call_removes_its_timer(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 300, "label": "eggs"}, call_id="fc-eggs")
        env.output("set_timer", {"seconds": 600, "label": "pasta"}, call_id="fc-pasta")
        env.error("set_timer", {"seconds": -1}, call_id="fc-bad")
        assert env.registry.cancel(["fc-eggs", "fc-bad", "fc-unknown"]) == ["removed timer eggs"]
        assert [t.label for t in env.service.list()] == ["pasta"]
        assert env.registry.cancel(["fc-eggs"]) == []

    with_env(tmp_path, body)


def test_cancelled_set_timer_call_whose_timer_is_gone_undoes_nothing(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_timer", {"seconds": 300, "label": "eggs"}, call_id="fc-eggs")
        env.output("cancel_timer", {"timer": "eggs"}, call_id="fc-cancel")
        env.output("set_timer", {"seconds": 300, "label": "eggs"}, call_id="fc-eggs-again")
        assert env.registry.cancel(["fc-eggs", "fc-cancel"]) == []
        assert [t.label for t in env.service.list()] == ["eggs"]

    with_env(tmp_path, body)


def test_cancelled_set_volume_call_restores_the_previous_volume(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        env.output("set_volume", {"level": 90}, call_id="fc-loud")
        assert env.registry.cancel(["fc-loud"]) == ["volume back to 50"]
        assert env.volume.level == 50
        env.output("set_volume", {"level": 90}, call_id="fc-loud-2")
        env.volume.set(70)  # the user turned it down with ctl since: leave that alone
        assert env.registry.cancel(["fc-loud-2"]) == []
        assert env.volume.level == 70

    with_env(tmp_path, body)


def test_only_the_last_calls_are_remembered_for_undo(tmp_path: Path) -> None:
    def body(env: Env) -> None:
        total = MAX_REMEMBERED_CALLS + 50
        for n in range(total):
            env.output("set_volume", {"level": n % 101}, call_id=f"fc-{n}")
        assert env.registry.cancel(["fc-0", f"fc-{total - MAX_REMEMBERED_CALLS - 1}"]) == []
        assert env.registry.cancel([f"fc-{total - 1}"]) == [f"volume back to {(total - 2) % 101}"]

    with_env(tmp_path, body)
