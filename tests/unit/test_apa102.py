"""APA102 frames as bytes: what a strip is told for each colour, brightness cap and night dimming.

The frames are decoded here by hand, from the datasheet's layout (32 zero bits, then per LED
0b111 + 5-bit brightness, blue, green, red, then ones), not with the encoder's own helpers.
"""

from __future__ import annotations

import math

import pytest

from appliance.hw import apa102
from appliance.hw.led_outputs import StripOutput
from appliance.hw.led_patterns import PULSE_FPS, colour_overrides, parse_colour, pattern_for
from appliance.hw.states import STATES
from appliance.settings.errors import ConfigError
from appliance.settings.loader import load_config


def decode(frame: bytes, count: int) -> list[tuple[int, int, int, int]]:
    """(brightness, red, green, blue) per LED, after checking the start and end frames."""
    assert frame[:4] == b"\x00\x00\x00\x00", "a frame starts with 32 zero bits"
    body, end = frame[4:4 + 4 * count], frame[4 + 4 * count:]
    assert len(end) * 8 >= count / 2 and set(end) == {0xFF}, "the end frame is at least count/2 ones"
    leds = []
    for i in range(0, len(body), 4):
        head, blue, green, red = body[i:i + 4]
        assert head >> 5 == 0b111, f"LED {i // 4} lacks the 0b111 marker: {head:#010b}"
        leds.append((head & 0x1F, red, green, blue))
    return leds


def seen(led: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """The light an LED gives per channel, 0..1: global brightness times the channel's PWM."""
    brightness, red, green, blue = led
    return tuple(brightness / 31 * channel / 255 for channel in (red, green, blue))  # type: ignore[return-value]


# --------------------------------------------------------------------------- the frame itself


def test_a_red_strip_of_three_leds_byte_by_byte() -> None:
    frame = apa102.frame((1.0, 0.0, 0.0), 3)
    assert frame == bytes(4) + bytes([0xFF, 0x00, 0x00, 0xFF]) * 3 + b"\xff" * 4


def test_colours_go_out_blue_green_red() -> None:
    (led,) = decode(apa102.frame((1.0, 0.5, 0.0), 1), 1)
    assert led == (31, 255, 128, 0)
    assert apa102.frame((0.0, 0.0, 1.0), 1)[4:8] == bytes([0xFF, 0xFF, 0x00, 0x00])


@pytest.mark.parametrize("count", [1, 3, 12, 16, 17, 33, 64, 65, 100, 300])
def test_the_end_frame_reaches_the_last_led(count: int) -> None:
    frame = apa102.frame((0.0, 1.0, 0.0), count)
    assert len(decode(frame, count)) == count
    end = frame[4 + 4 * count:]
    # at least count/2 clock edges, never less than the datasheet's 32 bits
    assert len(end) == max(4, math.ceil(count / 16))


def test_dark_is_zero_brightness_and_zero_colour() -> None:
    assert decode(apa102.frame((0.0, 0.0, 0.0), 3), 3) == [(0, 0, 0, 0)] * 3
    assert decode(apa102.frame((0.00001, 0.0, 0.0), 1), 1) == [(0, 0, 0, 0)]  # too dark to show


@pytest.mark.parametrize("level", [1.0, 0.9, 0.5, 0.3, 0.1, 0.05, 1 / 31 + 0.001, 0.02, 0.004])
def test_dimming_uses_the_5_bit_field_and_keeps_the_colour_bytes_high(level: float) -> None:
    (led,) = decode(apa102.frame((0.0, level, level), 1), 1)
    brightness, red, green, blue = led
    assert red == 0 and green == blue, "the hue stays cyan"
    assert seen(led)[1] == pytest.approx(level, rel=0.01, abs=0.5 / 255 / 31)
    assert brightness == math.ceil(level * 31 - 1e-9), "the coarsest 5-bit step that still reaches the level"
    if level > 1 / 31:
        assert green >= 128, "the 8-bit PWM stays in its upper half, where APA102s do not flicker"


def test_every_led_of_the_strip_shows_the_same_colour() -> None:
    leds = decode(apa102.frame((0.2, 0.1, 0.0), 5), 5)
    assert len(set(leds)) == 1 and seen(leds[0]) == pytest.approx((0.2, 0.1, 0.0), abs=0.002)


# --------------------------------------------------------------------------- states, cap, night, overrides


def shown(state: str, cap: float = 1.0, **kwargs: object) -> tuple[float, float, float]:
    """What the first frame of `state`'s pattern at its peak shows (colour_at(0) for a blink/solid)."""
    pattern = pattern_for(state, cap=cap, **kwargs)  # type: ignore[arg-type]
    t = pattern.fade_in if pattern.kind == "pulse" else 0.0
    (led,) = decode(apa102.frame(pattern.colour_at(t), 1), 1)
    return seen(led)


@pytest.mark.parametrize(
    ("state", "colour"),
    [
        ("listening", (0, 0, 1)),
        ("thinking", (0, 1, 1)),
        ("speaking", (0, 1, 0)),
        ("error", (1, 0, 0)),
        ("offline", (1, 0.5, 0)),
        ("alarm", (1, 1, 1)),
        ("connecting", (0, 0, 0.5)),
    ],
)
def test_each_state_at_its_peak(state: str, colour: tuple[float, float, float]) -> None:
    assert shown(state) == pytest.approx(colour, abs=0.003)


def test_listening_thinking_and_speaking_differ_at_a_glance() -> None:
    hues = {state: tuple(round(c) for c in shown(state)) for state in ("listening", "thinking", "speaking")}
    assert len(set(hues.values())) == 3, hues


def test_the_brightness_cap_and_night_dim_the_5_bit_field() -> None:
    full = decode(apa102.frame(pattern_for("listening", cap=1.0).colour, 1), 1)[0]
    capped = decode(apa102.frame(pattern_for("listening", cap=0.3).colour, 1), 1)[0]
    night = decode(apa102.frame(pattern_for("listening", cap=0.1).colour, 1), 1)[0]
    assert full[0] == 31 and capped[0] == 10 and night[0] == 4
    assert seen(capped) == pytest.approx((0, 0, 0.3), abs=0.003)
    assert seen(night) == pytest.approx((0, 0, 0.1), abs=0.003)
    assert night[3] >= 128, "night dims with the 5-bit field, not by starving the 8-bit PWM"
    assert apa102.frame(pattern_for("listening", cap=0.0).colour_at(0.0), 3) == apa102.frame((0, 0, 0), 3)


def test_idle_follows_idle_brightness_under_the_cap() -> None:
    assert shown("idle", cap=0.5, idle_brightness=0.4) == pytest.approx((0.2, 0.2, 0.2), abs=0.003)
    assert shown("idle", cap=1.0, idle_brightness=0.0) == (0.0, 0.0, 0.0)


def test_colour_overrides_change_the_bytes_and_still_obey_the_cap() -> None:
    colours = colour_overrides(["listening:FF8000", "error:#00ff00"])
    assert shown("listening", colours=colours) == pytest.approx((1.0, 128 / 255, 0.0), abs=0.003)
    assert shown("listening", cap=0.2, colours=colours) == pytest.approx((0.2, 0.1, 0.0), abs=0.003)
    assert shown("error", colours=colours) == pytest.approx((0, 1, 0), abs=0.003)
    assert shown("thinking", colours=colours) == pytest.approx((0, 1, 1), abs=0.003)  # the rest keep theirs
    alarm = pattern_for("alarm", cap=1.0, colours=colour_overrides(["alarm:FFA000"]))
    assert (alarm.colour, alarm.off_colour) == (pytest.approx((1, 160 / 255, 0)), (1, 0, 0))


def test_a_colour_entry_reads_as_state_and_rgb() -> None:
    assert parse_colour("speaking:00FF80") == ("speaking", (0.0, 1.0, 128 / 255))
    assert parse_colour(" idle : #FFFFFF ") == ("idle", (1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("listning:0000FF", "names no LED state 'listning'.*did you mean listening\\?"),
        ("sleeping:0000FF", "names no LED state 'sleeping'; the states are connecting, idle"),
        ("listening:00FF", "has colour '00FF'; write six hex digits RRGGBB"),
        ("listening:GG0000", "has colour 'GG0000'"),
        ("listening", "must be STATE:RRGGBB"),
    ],
)
def test_a_bad_colour_entry_is_one_line_naming_the_key(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(env={}, overrides=[f"leds.colors={entry}"])
    assert "leds.colors" in str(caught.value) and "\n" not in str(caught.value)


def test_one_state_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="lists 'error' twice"):
        load_config(env={}, overrides=["leds.colors=error:FF0000,error:FF8000"])
    with pytest.raises(ValueError, match="lists 'error' twice"):
        colour_overrides(["error:FF0000", "error:FF8000"])


def test_every_state_may_have_a_colour() -> None:
    entries = ",".join(f"{state}:102030" for state in STATES)
    assert len(load_config(env={}, overrides=[f"leds.colors={entries}"]).leds.colors) == len(STATES)


# --------------------------------------------------------------------------- the strip's wiring settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["leds.data_pin=5"], "leds.clock_pin = -1 .*must be set too when leds.data_pin is"),
        (["leds.data_pin=5", "leds.clock_pin=5"], "must differ from leds.data_pin"),
        (["leds.data_pin=7", "leds.clock_pin=6"], "GPIO7, the chip-select line"),
        (["leds.spi_bus=1"], "must be 0: gpiozero drives hardware SPI on bus 0 only"),
        (["leds.count=0"], "leds.count = 0 .*between 1 and 64"),
    ],
)
def test_a_strip_wiring_that_cannot_work_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=["leds.kind=apa102", *overrides])


def test_the_strips_pins() -> None:
    cfg = load_config(env={}, overrides=["leds.kind=apa102"]).leds
    assert (cfg.count, cfg.spi_bus, cfg.spi_device, cfg.data_pin, cfg.clock_pin) == (3, 0, 1, -1, -1)
    hardware = apa102.strip_pins(data_pin=-1, clock_pin=-1, spi_bus=0, spi_device=1)
    assert (hardware.clock, hardware.data, hardware.select, hardware.hardware) == (11, 10, 7, True)
    bonnet = apa102.strip_pins(data_pin=5, clock_pin=6, spi_bus=0, spi_device=1)
    assert (bonnet.clock, bonnet.data, bonnet.hardware) == (6, 5, False)
    assert apa102.strip_pins(data_pin=-1, clock_pin=-1, spi_bus=0, spi_device=0).select == 8


# --------------------------------------------------------------------------- drawing a pattern over time


class FakeStrip:
    """Records the frames written to it; `clock` is the test's."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.frames.append(bytes(data))

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_for(output: StripOutput, clock: Clock, first: float | None, seconds: float) -> int:
    """Call tick() whenever the output asked, for `seconds` of fake time; returns the ticks made."""
    end, delay, ticks = clock.now + seconds, first, 0
    while delay is not None and clock.now + delay <= end:
        clock.now += delay
        delay = output.tick()
        ticks += 1
    return ticks


def test_a_solid_state_is_written_once_and_never_asks_for_a_tick() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 3, clock=clock)
    assert output.render("listening", pattern_for("listening", cap=1.0)) is None
    assert len(strip.frames) == 1 and seen(decode(strip.frames[0], 3)[0]) == pytest.approx((0, 0, 1))
    # the same frame again (idle at 0 after listening would differ; listening twice does not)
    assert output.render("listening", pattern_for("listening", cap=1.0)) is None
    assert len(strip.frames) == 1, "an unchanged frame is not sent again"


def test_a_blink_writes_only_at_its_edges() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 3, clock=clock)
    pattern = pattern_for("offline", cap=1.0)  # 0.2 s on, 1.8 s off
    first = output.render("offline", pattern)
    assert first == pytest.approx(0.2)
    ticks = run_for(output, clock, first, 5.0)  # edges at 0.2, 2.0, 2.2, 4.0, 4.2 s
    lit = [seen(decode(frame, 3)[0]) != (0, 0, 0) for frame in strip.frames]
    assert lit == [True, False] * 3
    assert ticks == 5, "no wake-ups between the edges"


def test_the_alarm_flashes_white_then_red() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 1, clock=clock)
    run_for(output, clock, output.render("alarm", pattern_for("alarm", cap=1.0)), 1.0)
    colours = [tuple(round(c) for c in seen(decode(frame, 1)[0])) for frame in strip.frames]
    assert colours[:4] == [(1, 1, 1), (1, 0, 0), (1, 1, 1), (1, 0, 0)]


def test_a_pulse_reaches_its_peak_and_its_dark_and_skips_unchanged_steps() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 3, clock=clock)
    pattern = pattern_for("thinking", cap=1.0)  # 0.25 s up, 0.25 s down
    ticks = run_for(output, clock, output.render("thinking", pattern), 1.0)
    levels = [seen(decode(frame, 3)[0])[1] for frame in strip.frames]
    assert max(levels) == pytest.approx(1.0) and min(levels) == 0.0
    assert levels.count(pytest.approx(1.0)) == 2, "the peak of each of the two cycles"
    assert ticks >= PULSE_FPS - 1, "about one step per 1/25 s"
    assert all(a != b for a, b in zip(strip.frames, strip.frames[1:])), "no frame is sent twice in a row"


def test_a_very_dim_pulse_sends_fewer_frames_than_steps() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 3, clock=clock)
    ticks = run_for(output, clock, output.render("speaking", pattern_for("speaking", cap=0.0005)), 2.8)
    assert 1 <= len(strip.frames) < ticks / 4, "steps that look the same are not sent"


def test_a_late_worker_skips_to_the_present() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 1, clock=clock)
    output.render("error", pattern_for("error", cap=1.0))  # 0.125 s on, 0.125 s off
    clock.now += 0.3  # woke 0.175 s late: now in the second cycle's lit half
    output.tick()
    assert seen(decode(strip.frames[-1], 1)[0]) == pytest.approx((1, 0, 0))


def test_close_turns_the_strip_dark_and_releases_it() -> None:
    strip, clock = FakeStrip(), Clock()
    output = StripOutput(strip, 3, clock=clock)
    output.render("alarm", pattern_for("alarm", cap=1.0))
    output.close()
    assert decode(strip.frames[-1], 3) == [(0, 0, 0, 0)] * 3 and strip.closed


def test_a_button_on_a_strip_pin_is_refused_with_both_names() -> None:
    """The Voice Bonnet's DotStars clock on GPIO6: a button moved there would fight the strip."""
    from appliance.settings.validate import config_problems, led_pins

    bonnet = ["leds.kind=apa102", "leds.data_pin=5", "leds.clock_pin=6"]
    cfg = load_config(None, env={}, overrides=[*bonnet, "button.pin=6"])
    assert "GPIO6 is both button.pin and in leds.clock_pin; give the LED another pin" in config_problems(cfg)
    respeaker = load_config(None, env={}, overrides=["leds.kind=apa102"])
    assert sorted(pin for _key, pin in led_pins(respeaker)) == [7, 10, 11]  # CE1, MOSI, SCLK
