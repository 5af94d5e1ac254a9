"""A finished timer rings until a press, `ctl stop` or its own end, with named fakes; and it rings at
its own level, apart from the voice volume, never under the floor, softly at first."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import pytest

from appliance.app.conductor import Conductor, State
from appliance.audio.earcons import earcon
from appliance.audio.speaker import Player
from appliance.audio.virtual_card import MIC_NAME, SPEAKER_NAME, VirtualCard
from appliance.audio.volume import ALARM_RAMP_DB, ALARM_RAMP_S, alarm_gain, level_to_gain
from appliance.hw.gestures import Gesture
from appliance.live.link import LinkState
from appliance.settings.loader import load_config
from appliance.settings.errors import ConfigError
from appliance.settings.schema import AudioConfig, Config, TimersConfig
from appliance.timers.service import TimerService, TimerStore
from fakes import FakeLights, FakeSession, FakeSpeaker, FakeTimers, FakeUplink
from waiting import wait_until

FLOOR = TimersConfig.ALARM_VOLUME_FLOOR
CARD_RATE = 48000


@dataclass
class LevelledTimers(FakeTimers):
    """FakeTimers with the alarm level the timer service reports."""

    alarm_level: int = 85


@dataclass
class RingingSpeaker(FakeSpeaker):
    """FakeSpeaker that also records each alarm ring: (level, seconds since ringing began)."""

    rings: list[tuple[int, float]] = field(default_factory=list)

    def play_alarm(self, level: int, since_s: float) -> bool:
        self.rings.append((level, since_s))
        self.earcons.append("alarm")
        return True


def dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(np.square(x.astype(np.float64))))), 1e-12)))


def ring_dbfs(heard: np.ndarray, ring_frames: int) -> float:
    """RMS of the loudest stretch one ring long: the ring, wherever it landed in the recording."""
    squares = np.concatenate([[0.0], np.cumsum(np.square(heard.astype(np.float64)))])
    best = float(np.max(squares[ring_frames:] - squares[:-ring_frames])) / ring_frames
    return float(10 * np.log10(max(best, 1e-24)))


def rig(interval_s: float = 0.01, *, alarm_level: int = 85, volume: int = 50):
    cfg = Config()
    cfg = replace(cfg, timers=replace(cfg.timers, ring_interval_s=interval_s))
    timers, speaker, uplink = LevelledTimers(alarm_level=alarm_level), RingingSpeaker(volume=volume), FakeUplink()
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


# ------------------------------------------------------------------ how loud, and how it starts


def test_the_bell_rings_at_the_timers_alarm_level_whatever_the_voice_volume_and_tells_how_long_it_rang():
    async def body():
        conductor, timers, speaker, _ = rig(alarm_level=90, volume=0)
        timers.ringing.append("eggs")
        conductor.timer_rang(SimpleNamespace(label="eggs"))
        await wait_until(lambda: len(speaker.rings) >= 3, "three rings", timeout=5)
        conductor.stop()
        await conductor.close()
        return speaker

    speaker = asyncio.run(asyncio.wait_for(body(), 10))
    assert speaker.volume == 0, "the alarm leaves the voice volume alone"
    assert {level for level, _ in speaker.rings} == {90}
    since = [s for _, s in speaker.rings]
    assert since[0] == pytest.approx(0.0, abs=0.05), "the first ring is the start of the ramp"
    assert since == sorted(since) and since[-1] > since[0]


def test_the_first_ring_is_12_db_under_the_alarm_level_and_full_within_4_s():
    full = alarm_gain(85, ALARM_RAMP_S)
    assert full == pytest.approx(level_to_gain(85))
    assert 20 * np.log10(alarm_gain(85, 0.0) / full) == pytest.approx(-12.0, abs=0.01)
    assert ALARM_RAMP_DB == -12.0 and 3.0 <= ALARM_RAMP_S <= 4.0
    steps = [alarm_gain(85, t) for t in np.arange(0.0, 10.0, 0.5)]
    assert all(a < b for a, b in zip(steps, steps[1:]) if b < full), "it only rises"
    assert steps[-1] == pytest.approx(full) and alarm_gain(85, 600.0) == pytest.approx(full)
    # a ring two seconds in (the default rhythm) is halfway in dB
    assert 20 * np.log10(alarm_gain(85, 2.0) / full) == pytest.approx(-6.0, abs=0.01)


def test_a_level_under_the_floor_rings_at_the_floor_and_the_help_says_so():
    assert Config().timers.alarm_volume == 85 and Config().timers.alarm_level == 85
    for asked, rings in ((0, FLOOR), (FLOOR - 1, FLOOR), (FLOOR, FLOOR), (FLOOR + 1, FLOOR + 1), (100, 100)):
        cfg = load_config(env={}, overrides=[f"timers.alarm_volume={asked}"])
        assert cfg.timers.alarm_level == rings, asked
    with pytest.raises(ConfigError, match="timers.alarm_volume"):
        load_config(env={}, overrides=["timers.alarm_volume=101"])
    help_text = next(f.metadata["help"] for f in dataclasses.fields(TimersConfig) if f.name == "alarm_volume")
    assert f"below {FLOOR}" in help_text


def test_the_timer_service_reports_the_configured_alarm_level(tmp_path):
    async def body():
        loop = asyncio.get_running_loop()
        store = TimerStore.in_dir(tmp_path)
        quiet = TimerService(store, TimersConfig(alarm_volume=5), loop, on_ring=lambda _t: None)
        loud = TimerService(store, TimersConfig(alarm_volume=97), loop, on_ring=lambda _t: None)
        return quiet.alarm_level, loud.alarm_level

    assert asyncio.run(body()) == (FLOOR, 97)


def test_a_ring_at_the_floor_after_the_ramp_still_reaches_minus_30_dbfs():
    """The floor is there so a timer is always heard: even at the floor a full ring is -30 dBFS or louder."""
    for rate in (24000, 48000):
        assert dbfs(earcon("alarm", rate) * alarm_gain(FLOOR, ALARM_RAMP_S)) >= -30.0


# ------------------------------------------------------------------ through the real speaker code


def play_on_card(volume: int, play) -> np.ndarray:
    """Start a Player on a virtual card at voice `volume`, do `play(player)`, return what the card played."""
    ring_frames = earcon("alarm", CARD_RATE).size

    async def run() -> np.ndarray:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=10.0)
        cfg = dataclasses.replace(AudioConfig(), input_device=MIC_NAME, output_device=SPEAKER_NAME, volume=volume)
        player = Player(cfg, loop, pa=card)
        try:
            fmt = player.start()
            assert fmt is not None and fmt.rate == CARD_RATE
            start = card.output_frames_played
            assert play(player)
            assert await asyncio.to_thread(card.wait_output_frames, start + 2 * ring_frames, 10.0)
            assert player.stats.callback_errors == 0
        finally:
            player.close()
            card.terminate()
        return card.recorded()[:, 0].astype(np.float64) / 32768.0

    return asyncio.run(run())


def test_the_ring_is_as_loud_at_voice_volume_0_as_at_100_and_earcons_still_follow_the_voice():
    ring_frames = earcon("alarm", CARD_RATE).size
    expected = dbfs(earcon("alarm", CARD_RATE)) + 20 * np.log10(level_to_gain(85))

    def full_ring(player: Player) -> bool:
        return player.play_alarm(85, ALARM_RAMP_S)

    at_0 = ring_dbfs(play_on_card(0, full_ring), ring_frames)
    at_100 = ring_dbfs(play_on_card(100, full_ring), ring_frames)
    assert at_0 == pytest.approx(expected, abs=0.3)
    assert at_100 == pytest.approx(at_0, abs=0.3), "the voice volume must not move the alarm"
    assert at_0 >= -30.0

    first = ring_dbfs(play_on_card(0, lambda player: player.play_alarm(85, 0.0)), ring_frames)
    assert first == pytest.approx(at_0 - 12.0, abs=0.3), "the first ring is 12 dB softer"

    chime = earcon("listen_start", CARD_RATE).size
    quiet = ring_dbfs(play_on_card(0, lambda player: player.play_earcon("listen_start")), chime)
    loud = ring_dbfs(play_on_card(100, lambda player: player.play_earcon("listen_start")), chime)
    assert loud - quiet > 20.0, "earcons keep following the voice volume"


def test_the_alarm_cannot_be_played_as_an_earcon_at_the_voice_level():
    def as_earcon(player: Player) -> bool:
        with pytest.raises(ValueError, match="play_alarm"):
            player.play_earcon("alarm")
        return player.play_alarm(FLOOR, ALARM_RAMP_S)

    assert ring_dbfs(play_on_card(0, as_earcon), earcon("alarm", CARD_RATE).size) >= -30.0
