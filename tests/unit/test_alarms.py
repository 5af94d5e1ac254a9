"""A finished timer rings until a press, `ctl stop` or its own end, with named fakes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

from appliance.app.conductor import Conductor, State
from appliance.hw.gestures import Gesture
from appliance.live.link import LinkState
from appliance.settings.schema import Config
from fakes import FakeLights, FakeSession, FakeSpeaker, FakeTimers, FakeUplink
from waiting import wait_until


def rig(interval_s: float = 0.01):
    cfg = Config()
    cfg = replace(cfg, timers=replace(cfg.timers, ring_interval_s=interval_s))
    timers, speaker, uplink = FakeTimers(), FakeSpeaker(), FakeUplink()
    session = FakeSession()
    conductor = Conductor(cfg, session, uplink, speaker, FakeLights(), clock=lambda: session.now, alarms=timers)
    conductor.start()
    session.link(LinkState.READY, "up")
    return conductor, timers, speaker, uplink


def run(body):
    asyncio.run(asyncio.wait_for(body(), 10))


def test_a_finished_timer_rings_until_a_press_stops_it_and_the_press_does_not_listen():
    async def body():
        conductor, timers, speaker, uplink = rig()
        timers.ringing.append("eggs")
        conductor.timer_rang(SimpleNamespace(label="eggs"))
        assert conductor.state is State.ALARM
        await wait_until(lambda: speaker.earcons.count("alarm") >= 3, "three rings", timeout=5)
        conductor.gesture(Gesture.PRESS)
        assert not timers.ringing
        assert conductor.state is not State.ALARM
        assert not uplink.listening, "the press that stops an alarm must not start a question"
        rang = speaker.earcons.count("alarm")
        await wait_until(lambda: not conductor.bell.sounding, "the bell to fall silent", timeout=5)
        assert speaker.earcons.count("alarm") == rang, "the alarm rang again after the press"
        await conductor.close()

    run(body)


def test_a_timer_that_stops_by_itself_lets_the_appliance_rest():
    async def body():
        conductor, timers, speaker, _ = rig()
        timers.ringing.append("tea")
        conductor.timer_rang(SimpleNamespace(label="tea"))
        await wait_until(lambda: "alarm" in speaker.earcons, "a ring", timeout=5)
        timers.ringing.clear()  # ring_max_s passed: the service stopped it
        await conductor.wait_state(State.IDLE, timeout=5)
        await conductor.close()

    run(body)


def test_ctl_stop_silences_the_alarm():
    async def body():
        conductor, timers, _, _ = rig()
        timers.ringing.append("pasta")
        conductor.timer_rang(SimpleNamespace(label="pasta"))
        conductor.stop()
        assert not timers.ringing and conductor.state is State.IDLE
        await conductor.close()

    run(body)
