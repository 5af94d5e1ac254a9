from __future__ import annotations

import datetime as dt

import pytest

from appliance.hw.night import NightError, NightMode, NightWindow


def at(hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 2, hh, mm)


def test_a_window_across_midnight():
    w = NightWindow.parse("22:00-07:00")
    assert w.contains(at(23)) and w.contains(at(3)) and w.contains(at(22))
    assert not w.contains(at(7)) and not w.contains(at(12))
    assert w.next_change(at(12)) == at(22)
    assert w.next_change(at(23)) == dt.datetime(2026, 12, 3, 7, 0)


def test_a_daytime_window_and_no_window():
    w = NightWindow.parse("13:30-15:00")
    assert w.contains(at(14)) and not w.contains(at(15))
    never = NightWindow.parse("")
    assert not never.enabled and not never.contains(at(3)) and never.next_change(at(3)) is None


@pytest.mark.parametrize("bad", ["22-07", "25:00-07:00", "22:00", "22:00-22:00", "10:60-11:00"])
def test_bad_windows_say_what_to_write(bad):
    with pytest.raises(NightError, match="22:00-07:00|same time"):
        NightWindow.parse(bad)


def test_the_owner_overrides_the_schedule_until_auto():
    mode = NightMode(NightWindow.parse("22:00-07:00"))
    assert not mode.active(at(12))
    mode.set("on")
    assert mode.active(at(12)) and "by hand" in mode.describe(at(12))
    mode.set("off")
    assert not mode.active(at(23))
    mode.set("auto")
    assert mode.active(at(23)) and "schedule" in mode.describe(at(23))
    with pytest.raises(NightError):
        mode.set("maybe")


class CapRecorder:
    """Named fake of the LEDs' dimmer: records every brightness cap set."""

    def __init__(self) -> None:
        self.caps: list[float] = []

    def set_brightness_cap(self, cap: float) -> None:
        self.caps.append(cap)


def night_lights(window: str, clock: list[dt.datetime], leds: CapRecorder):
    import asyncio

    from appliance.hw.night import NightLights

    loop = asyncio.new_event_loop()
    lights = NightLights(NightMode(NightWindow.parse(window)), leds, loop, day_cap=1.0, night_cap=0.1,
                         now=lambda: clock[0])
    return loop, lights


def test_the_leds_dim_inside_the_window_and_come_back_after_it():
    clock, leds = [at(21, 59)], CapRecorder()
    loop, lights = night_lights("22:00-07:00", clock, leds)
    try:
        lights.start()
        assert leds.caps == [1.0] and not lights.active
        clock[0] = at(22, 0)
        lights._apply()  # the timer's callback, as the loop would run it at the boundary
        assert leds.caps == [1.0, 0.1] and lights.active
        assert lights.describe() == "on (by the schedule)"
    finally:
        lights.close()
        loop.close()


def test_ctl_night_overrides_the_schedule_until_auto():
    clock, leds = [at(12)], CapRecorder()
    loop, lights = night_lights("22:00-07:00", clock, leds)
    try:
        lights.start()
        assert lights.set("on") == "on (set by hand)" and leds.caps[-1] == 0.1
        assert lights.set("off") == "off (set by hand)" and leds.caps[-1] == 1.0
        clock[0] = at(23)
        assert lights.set("auto") == "on (by the schedule)" and leds.caps[-1] == 0.1
        with pytest.raises(NightError):
            lights.set("dim")
    finally:
        lights.close()
        loop.close()


def test_the_timer_wakes_at_the_next_boundary_not_later():
    clock, leds = [at(21, 55)], CapRecorder()
    loop, lights = night_lights("22:00-07:00", clock, leds)
    try:
        lights.start()
        delay = lights._timer.when() - loop.time()
        assert 299 <= delay <= 301  # five minutes and the half-second margin, not the 10-min recheck
    finally:
        lights.close()
        loop.close()
