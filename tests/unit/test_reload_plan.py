"""A config reload: which change applies when (`appliance.app.reload`), reading the config again as
at the start, the parts that take new settings in place, and the conductor's wait for an idle
moment before a new session."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from appliance.app.conductor import Conductor, State
from appliance.app.reload import (
    KEPT_KEYS,
    LIVE_KEYS,
    NEW_SESSION_KEYS,
    RESTART_KEYS,
    Effect,
    diff,
    effect_of,
    load_like,
)
from appliance.hw.gestures import Gesture
from appliance.hw.leds import Leds
from appliance.live import messages as p
from appliance.settings.fields import sections, setting_names
from appliance.settings.loader import load_config
from appliance.settings.schema import Config, LedsConfig
from fakes import FakeLights, FakeSession, FakeSpeaker, FakeUplink


def _changed(cfg: Config, **dotted: object) -> Config:
    """`cfg` with "section__key" values replaced."""
    for name, value in dotted.items():
        section, key = name.split("__")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{key: value})})
    return cfg


# --------------------------------------------------------------------------- the classification


def test_every_setting_is_classified_once() -> None:
    every = set(setting_names())
    assert {f"{section}.{key}" for section, (_, specs) in sections().items() for key in specs} < every
    assert {"mcp.servers", "mcp.call_timeout_s"} < every
    groups = [LIVE_KEYS, NEW_SESSION_KEYS, RESTART_KEYS, KEPT_KEYS]
    assert set().union(*groups) == every, "a setting without a reload effect, or one that does not exist"
    assert sum(len(g) for g in groups) == len(every), "a setting in two groups"


def test_a_key_nobody_classified_needs_a_restart() -> None:
    assert effect_of("live.voice") is Effect.NEW_SESSION
    assert effect_of("leds.max_brightness") is Effect.LIVE
    assert effect_of("audio.output_device") is Effect.RESTART
    assert effect_of("new.setting") is Effect.RESTART


def test_a_changed_mcp_server_list_or_timing_asks_for_a_restart() -> None:
    from appliance.mcp.config import McpServer, McpSettings

    old = Config()
    new = dataclasses.replace(old, mcp=McpSettings(servers=(McpServer(name="home", url="http://127.0.0.1/"),),
                                                   call_timeout_s=20.0))
    plan = diff(old, new)
    assert plan.restart == ("mcp.servers", "mcp.call_timeout_s")
    assert plan.live == plan.new_session == ()
    assert plan.now.mcp == plan.later.mcp == old.mcp  # the running manager keeps its servers
    assert any("mcp.servers, mcp.call_timeout_s changed; restart" in line for line in plan.messages())


def test_live_changes_are_in_force_at_once_and_nothing_else_moves() -> None:
    old = Config()
    new = _changed(old, leds__max_brightness=0.3, timers__alarm_volume=95, live__voice="Puck",
                   audio__output_device="hw:1", audio__volume=20)
    plan = diff(old, new)
    assert plan.live == ("leds.max_brightness", "timers.alarm_volume")
    assert plan.new_session == ("live.voice",)
    assert plan.restart == ("audio.output_device",)
    assert plan.kept == ("audio.volume",)
    assert plan.now.leds.max_brightness == 0.3 and plan.now.timers.alarm_volume == 95
    # the voice waits for the new session; the device and the volume stay as they are
    assert plan.now.live.voice == "Kore" and plan.later.live.voice == "Puck"
    assert plan.now.audio.output_device == plan.later.audio.output_device == "default"
    assert plan.now.audio.volume == plan.later.audio.volume == 70
    assert plan.later.leds.max_brightness == 0.3


def test_messages_name_the_keys_by_effect_never_their_values() -> None:
    old = Config()
    new = _changed(old, live__system_instruction="say the secret word swordfish", live__voice="Puck",
                   audio__output_device="hw:CARD=usb", leds__idle_brightness=0.2)
    lines = diff(old, new).messages()
    assert len(lines) == 3
    applied, session, restart = lines
    assert "leds.idle_brightness" in applied
    assert "live.voice, live.system_instruction" in session and "new conversation" in session
    assert "audio.output_device" in restart and "restart the appliance to apply" in restart
    assert not any("swordfish" in line or "usb" in line for line in lines)


def test_an_unchanged_file_says_so() -> None:
    plan = diff(Config(), Config())
    assert not plan.changed
    assert plan.messages() == ["config reloaded: nothing changed"]


def test_a_change_back_to_the_running_value_is_no_change() -> None:
    old = _changed(Config(), leds__max_brightness=0.5)
    assert not diff(old, _changed(Config(), leds__max_brightness=0.5)).changed


# --------------------------------------------------------------------------- reading it again


def test_the_config_is_read_again_from_the_same_file_environment_and_set(tmp_path, monkeypatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[live]\nvoice = "Puck"\n[leds]\nmax_brightness = 0.5\n')
    monkeypatch.setenv("APPLIANCE_TIMERS_ALARM_VOLUME", "90")
    overrides = [
        "live.system_instruction=Answer = briefly",  # an "=" in the value
        "leds.colors=listening:0040FF, error:FF0000",  # a list
        "live.reply_timeout_s=12.25",
        "audio.earcons=off",
        "button.pin=22",
        "mcp.call_timeout_s=20",  # [mcp] has no specs, but its timings take --set
    ]
    started = load_config(str(path), overrides=overrides)
    again = load_like(started)
    assert again() == started

    path.write_text('[live]\nvoice = "Charon"\n[leds]\nmax_brightness = 0.5\n')
    reread = again()
    assert reread.live.voice == "Charon"
    assert reread.timers.alarm_volume == 90  # the environment still counts
    assert reread.leds.colors == ("listening:0040FF", "error:FF0000")  # and --set still wins
    assert reread.live.system_instruction == "Answer = briefly" and reread.button.pin == 22
    assert reread.mcp.call_timeout_s == 20.0


# --------------------------------------------------------------------------- parts that take new settings


def test_the_leds_take_new_colours_and_idle_brightness_and_keep_their_wiring() -> None:
    leds = Leds(LedsConfig(kind="none", idle_brightness=0.0))
    leds.show("idle")
    assert leds.pattern.kind == "off"
    leds.use_settings(LedsConfig(kind="pwm", idle_brightness=0.4, colors=("idle:00FF00",)))
    assert leds.pattern.kind == "solid" and leds.pattern.level == pytest.approx(0.4)
    assert leds.pattern.colour == pytest.approx((0.0, 0.4, 0.0))
    assert leds.kind == "none"


# --------------------------------------------------------------------------- the conductor's idle moment

AUDIO = p.AudioChunk(b"\1\0" * 480)


class Rig:
    def __init__(self) -> None:
        self.session = FakeSession()
        self.uplink = FakeUplink()
        self.speaker = FakeSpeaker()
        self.conductor = Conductor(Config(), self.session, self.uplink, self.speaker, FakeLights(),
                                   clock=lambda: self.session.now)
        self.prepared: list[str] = []
        self.conductor.start()

    def prepare(self, what: str):
        return lambda: self.prepared.append(what)

    async def settle(self) -> None:
        for _ in range(100):
            await asyncio.sleep(0)
            if self.session.events.empty():
                for _ in range(5):
                    await asyncio.sleep(0)
                return
        raise AssertionError("the conductor does not keep up")


def run(body) -> None:
    async def main() -> None:
        rig = Rig()
        try:
            await body(rig)
        finally:
            await rig.conductor.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_new_session_settings_wait_for_the_reply_to_play_out() -> None:
    async def body(rig: Rig) -> None:
        c = rig.conductor
        c.gesture(Gesture.PRESS)
        c.gesture(Gesture.RELEASE_HOLD)
        turn = rig.session.ask()
        rig.uplink.report(turn)
        rig.session.serve(AUDIO)
        await rig.settle()
        assert c.state is State.SPEAKING
        c.new_conversation_when_idle(rig.prepare("voice"), "new settings")
        assert rig.prepared == [] and rig.session.new_conversations == 0  # never cut the reply
        earcons = list(rig.speaker.earcons)
        rig.session.serve(AUDIO, p.GenerationComplete(), p.TurnComplete())
        await rig.settle()
        assert c.turns[-1].outcome == "answered"
        assert rig.prepared == ["voice"] and rig.session.new_conversations == 1
        assert c.state is State.CONNECTING
        assert rig.speaker.earcons == earcons, "the switch made a sound"

    run(body)


def test_new_session_settings_at_rest_apply_at_once_and_a_later_reload_replaces_them() -> None:
    async def body(rig: Rig) -> None:
        c = rig.conductor
        c.gesture(Gesture.PRESS)
        assert c.state is State.LISTENING
        c.new_conversation_when_idle(rig.prepare("first"), "new settings")
        c.new_conversation_when_idle(rig.prepare("second"), "new settings")
        assert c.switch_pending
        c.gesture(Gesture.RELEASE_HOLD)
        rig.uplink.report(None, submitted=False)  # nothing was said
        await rig.settle()
        assert rig.prepared == ["second"] and rig.session.new_conversations == 1
        assert not c.switch_pending

    run(body)


def test_a_cancelled_switch_never_happens() -> None:
    async def body(rig: Rig) -> None:
        c = rig.conductor
        c.gesture(Gesture.PRESS)
        c.new_conversation_when_idle(rig.prepare("voice"), "new settings")
        assert c.cancel_new_conversation("new settings")
        c.gesture(Gesture.RELEASE_HOLD)
        rig.uplink.report(None, submitted=False)
        await rig.settle()
        assert rig.prepared == [] and rig.session.new_conversations == 0

    run(body)


def test_a_reload_back_to_the_settings_in_use_keeps_the_home_servers_new_conversation() -> None:
    """A home server came up (its tools need a new setup), then the owner undid an edit: the tools still come."""
    async def body(rig: Rig) -> None:
        c = rig.conductor
        c.gesture(Gesture.PRESS)
        c.new_conversation_when_idle(rig.prepare("home tools"), "home server tools")
        assert not c.cancel_new_conversation("new settings")
        c.gesture(Gesture.RELEASE_HOLD)
        rig.uplink.report(None, submitted=False)
        await rig.settle()
        assert rig.prepared == ["home tools"] and rig.session.new_conversations == 1

    run(body)
