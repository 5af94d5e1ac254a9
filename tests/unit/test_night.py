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
