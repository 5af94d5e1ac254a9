"""Status LEDs on gpiozero's mock pins: what a person looking at the box would see in each state."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Button, Device, GPIOPinInUse, PWMLED
from gpiozero.pins.mock import MockFactory, MockPWMPin, MockSPIDevice

from appliance.settings.schema import LedsConfig
from appliance.hw.led_patterns import pattern_for
from appliance.hw.leds import STATES, Leds, LedsError, build_leds

RGB_PINS = (5, 6, 13)
TIMEOUT_S = 5.0


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pin_factory = MockFactory(pin_class=MockPWMPin)
    yield pin_factory
    pin_factory.reset()


@pytest.fixture
def make(factory: MockFactory) -> Iterator[Callable[..., Leds]]:
    """Build Leds on the mock factory from LedsConfig overrides; everything built is closed afterwards."""
    built: list[Leds] = []

    def build(**overrides: object) -> Leds:
        leds = build_leds(dataclasses.replace(LedsConfig(), **overrides), pin_factory=factory)
        built.append(leds)
        return leds

    yield build
    for leds in built:
        leds.close()


def brightness_history(pin: MockPWMPin, active_high: bool = True) -> list[float]:
    """Every level the pin has had, as LED brightness (an active-low pin is inverted)."""
    return [float(s.state) if active_high else 1.0 - float(s.state) for s in list(pin.states)]


def brightness(pin: MockPWMPin, active_high: bool = True) -> float:
    return float(pin.state) if active_high else 1.0 - float(pin.state)


def settle(leds: Leds) -> None:
    """Wait for the LED worker to have shown the newest state (show() itself never waits)."""
    assert leds.wait_idle(TIMEOUT_S), "the LED worker did not catch up"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    """Poll a mock pin's recorded history until `condition` holds (bounded; not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def rose_then_fell(history: list[float], peak: float) -> bool:
    """The LED reached `peak` and afterwards got darker again."""
    for i, level in enumerate(history):
        if level == pytest.approx(peak):
            return any(later < peak - 1e-6 for later in history[i + 1:])
    return False


def wait_for_swing(pin: MockPWMPin, peak: float, active_high: bool = True) -> list[float]:
    wait_until(lambda: rose_then_fell(brightness_history(pin, active_high), peak),
               f"the LED to rise to {peak} and fall again")
    return brightness_history(pin, active_high)


def assert_shape(history: list[float], kind: str, peak: float, floor: float = 0.0) -> None:
    """A pulse passes through in-between levels; a blink jumps between floor and peak only."""
    assert max(history) == pytest.approx(peak)
    in_between = [v for v in history if floor + 1e-6 < v < peak - 1e-6]
    if kind == "pulse":
        assert in_between, "a pulse should fade, but the LED only switched"
    else:
        assert not in_between, f"a blink should switch, but the LED faded through {in_between}"


# --------------------------------------------------------------------------- the patterns themselves


@pytest.mark.parametrize(
    ("state", "kind", "hz_low", "hz_high"),
    [
        ("connecting", "pulse", 0.2, 0.9),
        ("thinking", "pulse", 1.6, 2.5),
        ("speaking", "pulse", 0.55, 0.85),
        ("offline", "blink", 0.3, 0.7),
        ("error", "blink", 3.0, 5.0),
        ("alarm", "blink", 2.5, 3.5),
        ("muted", "blink", 0.25, 0.5),
    ],
)
def test_each_state_has_its_own_rhythm(state: str, kind: str, hz_low: float, hz_high: float) -> None:
    pattern = pattern_for(state, cap=1.0)
    assert pattern.kind == kind
    assert hz_low <= 1.0 / pattern.period_s <= hz_high


def test_offline_blink_is_short_and_calm() -> None:
    pattern = pattern_for("offline", cap=1.0)
    assert pattern.on_time <= 0.3 and pattern.off_time >= 1.0


def test_muted_is_a_calm_half_bright_red_not_the_errors_frantic_blink() -> None:
    muted, error = pattern_for("muted", cap=1.0), pattern_for("error", cap=1.0)
    assert muted.on_time / muted.period_s >= 0.85, "lit nearly all the time: it reads as a steady light"
    assert muted.off_time >= 0.2, "yet with a gap a single-colour LED shows, unlike listening or idle"
    assert muted.level == pytest.approx(0.5) and error.level == pytest.approx(1.0)
    assert 1.0 / muted.period_s < 1.0 < 1.0 / error.period_s
    patterns = [pattern_for(state, cap=1.0, idle_brightness=0.2) for state in STATES]
    rhythms = [(p.kind, round(p.on_time, 3), round(p.off_time, 3)) for p in patterns]
    assert rhythms.count(rhythms[STATES.index("muted")]) == 1, "another state looks the same on one LED"


@pytest.mark.parametrize(
    ("state", "colour", "off_colour"),
    [
        ("listening", (0, 0, 1), (0, 0, 0)),
        ("thinking", (0, 1, 1), (0, 0, 0)),
        ("speaking", (0, 1, 0), (0, 0, 0)),
        ("offline", (1, 0.5, 0), (0, 0, 0)),
        ("error", (1, 0, 0), (0, 0, 0)),
        ("alarm", (1, 1, 1), (1, 0, 0)),
        ("connecting", (0, 0, 0.5), (0, 0, 0)),
        ("muted", (0.5, 0, 0), (0, 0, 0)),
    ],
)
def test_state_colours(state: str, colour: tuple[float, ...], off_colour: tuple[float, ...]) -> None:
    pattern = pattern_for(state, cap=1.0)
    assert pattern.colour == pytest.approx(colour)
    assert pattern.off_colour == pytest.approx(off_colour)


def test_brightness_cap_scales_level_and_colour() -> None:
    pattern = pattern_for("alarm", cap=0.3)
    assert pattern.level == pytest.approx(0.3)
    assert pattern.colour == pytest.approx((0.3, 0.3, 0.3))
    assert pattern.off_colour == pytest.approx((0.3, 0.0, 0.0))


def test_idle_is_dim_or_off() -> None:
    assert pattern_for("idle", cap=0.5, idle_brightness=0.2).kind == "solid"
    assert pattern_for("idle", cap=0.5, idle_brightness=0.2).level == pytest.approx(0.1)
    assert pattern_for("idle", cap=0.5, idle_brightness=0.0).kind == "off"


def test_unknown_state_is_refused() -> None:
    leds = build_leds(LedsConfig())
    with pytest.raises(ValueError, match="unknown LED state 'sleeping'"):
        leds.show("sleeping")
    assert leds.state is None


# --------------------------------------------------------------------------- kind = none


def test_none_kind_records_state_and_pattern_without_gpio() -> None:
    leds = build_leds(dataclasses.replace(LedsConfig(), kind="none", max_brightness=0.4))
    assert leds.state is None and leds.pattern.kind == "off"
    leds.show("thinking")
    assert leds.state == "thinking"
    assert leds.pattern == pattern_for("thinking", cap=0.4)
    leds.show("listening")
    assert (leds.pattern.kind, leds.pattern.level) == ("solid", pytest.approx(0.4))
    leds.show("idle")
    assert leds.pattern.kind == "off"
    leds.close()


# --------------------------------------------------------------------------- kind = pwm


@pytest.mark.parametrize("active_high", [True, False])
def test_pwm_solid_states(make: Callable[..., Leds], factory: MockFactory, active_high: bool) -> None:
    leds = make(kind="pwm", pin=12, active_high=active_high, max_brightness=0.4, idle_brightness=0.5)
    pin = factory.pin(12)
    leds.show("listening")
    settle(leds)
    assert pin.state == pytest.approx(0.4 if active_high else 0.6)
    leds.show("idle")
    settle(leds)
    assert pin.state == pytest.approx(0.2 if active_high else 0.8)


@pytest.mark.parametrize("active_high", [True, False])
def test_pwm_idle_with_zero_brightness_is_off(make: Callable[..., Leds], factory: MockFactory,
                                               active_high: bool) -> None:
    leds = make(kind="pwm", pin=12, active_high=active_high, idle_brightness=0.0)
    leds.show("listening")
    leds.show("idle")
    settle(leds)
    assert factory.pin(12).state == pytest.approx(0.0 if active_high else 1.0)
    assert leds.pattern.kind == "off"


@pytest.mark.parametrize(
    ("state", "kind", "peak"),
    [
        ("thinking", "pulse", 0.6),
        ("speaking", "pulse", 0.6),
        ("connecting", "pulse", 0.3),
        ("offline", "blink", 0.6),
        ("error", "blink", 0.6),
        ("alarm", "blink", 0.6),
        ("muted", "blink", 0.3),
    ],
)
def test_pwm_animated_states_move_and_stay_under_the_cap(
    make: Callable[..., Leds], factory: MockFactory, state: str, kind: str, peak: float
) -> None:
    leds = make(kind="pwm", pin=12, max_brightness=0.6)
    leds.show(state)
    history = wait_for_swing(factory.pin(12), peak)
    assert max(history) <= 0.6 + 1e-9
    assert min(history) >= 0.0
    assert_shape(history, kind, peak)


def test_pwm_active_low_pulse_is_inverted(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="pwm", pin=12, active_high=False, max_brightness=0.5)
    pin = factory.pin(12)
    pin.clear_states()
    leds.show("thinking")
    history = wait_for_swing(pin, 0.5, active_high=False)
    assert max(history) <= 0.5 + 1e-9
    # An active-low LED is dark when its pin is high: the pin never goes below 1 - cap.
    assert min(float(s.state) for s in list(pin.states)) >= 0.5 - 1e-9


def test_showing_the_same_solid_state_again_changes_nothing(make: Callable[..., Leds],
                                                             factory: MockFactory) -> None:
    leds = make(kind="pwm", pin=12)
    pin = factory.pin(12)
    leds.show("listening")
    settle(leds)
    pin.clear_states()
    leds.show("listening")
    settle(leds)
    assert len(pin.states) == 1 and pin.state == pytest.approx(1.0)


def test_showing_the_same_pulse_again_does_not_restart_it(make: Callable[..., Leds],
                                                          factory: MockFactory) -> None:
    leds = make(kind="pwm", pin=12)
    pin = factory.pin(12)
    leds.show("thinking")
    wait_until(lambda: brightness(pin) >= 0.6, "the pulse to get bright")
    leds.show("thinking")
    count = len(pin.states)
    wait_until(lambda: len(pin.states) >= count + 8, "the pulse to go on")
    history = brightness_history(pin)
    steps = [abs(b - a) for a, b in zip(history, history[1:])]
    # A running pulse moves in small steps; a restart would drop from bright straight to dark.
    assert max(steps) <= 0.25, history


def test_brightness_cap_applies_at_once(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="pwm", pin=12, max_brightness=1.0)
    pin = factory.pin(12)
    leds.show("listening")
    settle(leds)
    assert pin.state == pytest.approx(1.0)
    leds.set_brightness_cap(0.2)
    settle(leds)
    assert pin.state == pytest.approx(0.2)
    assert leds.brightness_cap == pytest.approx(0.2) and leds.pattern.level == pytest.approx(0.2)
    pin.clear_states()
    leds.show("error")
    assert max(wait_for_swing(pin, 0.2)) <= 0.2 + 1e-9
    leds.set_brightness_cap(0.0)
    settle(leds)
    assert pin.state == pytest.approx(0.0) and leds.pattern.kind == "off"
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="from 0 to 1"):
            leds.set_brightness_cap(bad)
    assert leds.brightness_cap == 0.0


def test_pwm_uses_the_default_pin_factory(monkeypatch: pytest.MonkeyPatch, factory: MockFactory) -> None:
    monkeypatch.setattr(Device, "pin_factory", factory)
    leds = build_leds(dataclasses.replace(LedsConfig(), kind="pwm", pin=18))
    try:
        leds.show("listening")
        settle(leds)
        assert factory.pin(18).state == pytest.approx(1.0)
    finally:
        leds.close()


def test_pwm_close_turns_off_and_releases_the_pin(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="pwm", pin=12)
    leds.show("thinking")
    with pytest.raises(GPIOPinInUse):
        PWMLED(12, pin_factory=factory)
    leds.close()
    assert factory.pin(12).state == pytest.approx(0.0)
    again = PWMLED(12, pin_factory=factory)
    again.close()
    leds.show("error")  # after close only the state is recorded; nothing is driven and nothing fails
    assert leds.state == "error"


# --------------------------------------------------------------------------- kind = rgb


def rgb_levels(factory: MockFactory, active_high: bool = True) -> tuple[float, ...]:
    return tuple(brightness(factory.pin(p), active_high) for p in RGB_PINS)


@pytest.mark.parametrize("active_high", [True, False])
def test_rgb_solid_colours(make: Callable[..., Leds], factory: MockFactory, active_high: bool) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS, active_high=active_high, max_brightness=0.5,
                idle_brightness=0.4)
    leds.show("listening")
    settle(leds)
    assert rgb_levels(factory, active_high) == pytest.approx((0.0, 0.0, 0.5))
    raw = tuple(factory.pin(p).state for p in RGB_PINS)
    assert raw == pytest.approx((0.0, 0.0, 0.5) if active_high else (1.0, 1.0, 0.5))
    leds.show("idle")
    settle(leds)
    assert rgb_levels(factory, active_high) == pytest.approx((0.2, 0.2, 0.2))


def test_rgb_idle_with_zero_brightness_is_dark(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS, idle_brightness=0.0)
    leds.show("listening")
    leds.show("idle")
    settle(leds)
    assert rgb_levels(factory) == pytest.approx((0.0, 0.0, 0.0))


def test_rgb_thinking_pulses_cyan(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS, max_brightness=0.7)
    leds.show("thinking")
    red, green, blue = (factory.pin(p) for p in RGB_PINS)
    for channel in (green, blue):
        history = wait_for_swing(channel, 0.7)
        assert max(history) <= 0.7 + 1e-9
        assert_shape(history, "pulse", 0.7)
    assert max(brightness_history(red)) == 0.0


def test_rgb_offline_blinks_amber(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS, max_brightness=0.8)
    leds.show("offline")
    red, green, blue = (factory.pin(p) for p in RGB_PINS)
    assert_shape(wait_for_swing(red, 0.8), "blink", 0.8)
    assert_shape(wait_for_swing(green, 0.4), "blink", 0.4)
    assert max(brightness_history(blue)) == 0.0


def test_rgb_alarm_flashes_white_over_red(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS, max_brightness=0.9)
    leds.show("alarm")
    red, green, blue = (factory.pin(p) for p in RGB_PINS)
    for channel in (green, blue):
        assert_shape(wait_for_swing(channel, 0.9), "blink", 0.9)
    # Red is lit both in the white flash and in the red gap between flashes.
    wait_until(lambda: len(green.states) >= 4, "several flashes")
    assert red.state == pytest.approx(0.9)
    assert max(brightness_history(red)) <= 0.9 + 1e-9


def test_rgb_close_releases_all_three_pins(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=RGB_PINS)
    leds.show("error")
    leds.close()
    assert rgb_levels(factory) == pytest.approx((0.0, 0.0, 0.0))
    for p in RGB_PINS:
        PWMLED(p, pin_factory=factory).close()


# --------------------------------------------------------------------------- kind = per_state


def test_per_state_lights_only_the_current_states_led(make: Callable[..., Leds],
                                                      factory: MockFactory) -> None:
    leds = make(kind="per_state", state_pins=("listening:5", "thinking:6", "error:13"), max_brightness=0.5)
    listening, thinking, error = (factory.pin(p) for p in (5, 6, 13))

    leds.show("listening")
    settle(leds)
    assert (listening.state, thinking.state, error.state) == pytest.approx((0.5, 0.0, 0.0))

    leds.show("thinking")
    settle(leds)
    assert listening.state == pytest.approx(0.0)
    history = wait_for_swing(thinking, 0.5)
    assert_shape(history, "pulse", 0.5)
    assert max(brightness_history(error)) == 0.0

    leds.show("speaking")  # no LED for speaking: everything dark
    settle(leds)
    assert (listening.state, thinking.state, error.state) == pytest.approx((0.0, 0.0, 0.0))
    assert leds.state == "speaking" and leds.pattern.kind == "off"

    error.clear_states()
    leds.show("error")
    settle(leds)
    assert_shape(wait_for_swing(error, 0.5), "blink", 0.5)
    assert (listening.state, thinking.state) == pytest.approx((0.0, 0.0))


def test_per_state_states_may_share_one_led(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="per_state", state_pins=("listening:5", "offline:6", "error:6"))
    shared = factory.pin(6)
    leds.show("offline")
    assert_shape(wait_for_swing(shared, 1.0), "blink", 1.0)
    leds.show("listening")
    settle(leds)
    assert (factory.pin(5).state, shared.state) == pytest.approx((1.0, 0.0))


def test_per_state_idle_led_follows_idle_brightness(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="per_state", state_pins=("idle:5", "listening:6"), idle_brightness=0.25,
                active_high=False)
    leds.show("idle")
    settle(leds)
    assert (factory.pin(5).state, factory.pin(6).state) == pytest.approx((0.75, 1.0))


def test_per_state_close_releases_every_pin(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="per_state", state_pins=("listening:5", "thinking:6"))
    leds.show("thinking")
    leds.close()
    for p in (5, 6):
        PWMLED(p, pin_factory=factory).close()


def test_per_state_refuses_a_state_listed_twice(factory: MockFactory) -> None:
    cfg = dataclasses.replace(LedsConfig(), kind="per_state", state_pins=("error:5", "error:6"))
    with pytest.raises(LedsError, match="'error' twice"):
        build_leds(cfg, pin_factory=factory)
    PWMLED(5, pin_factory=factory).close()  # nothing was left reserved


# --------------------------------------------------------------------------- when GPIO is missing or busy


def test_no_gpio_driver_gives_one_line_of_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-gpio-driver")
    with pytest.raises(LedsError) as caught:
        build_leds(dataclasses.replace(LedsConfig(), kind="pwm"))
    message = str(caught.value)
    assert "\n" not in message
    assert 'leds.kind = "none"' in message
    assert "no GPIO driver" in message


def test_pins_without_pwm_give_advice() -> None:
    plain = MockFactory()  # plain MockPin: no PWM, like gpiozero's native driver
    with pytest.raises(LedsError, match="cannot dim LEDs"):
        build_leds(dataclasses.replace(LedsConfig(), kind="pwm", pin=12), pin_factory=plain)


def test_pin_taken_by_the_button_gives_advice(factory: MockFactory) -> None:
    button = Button(17, pin_factory=factory)
    try:
        with pytest.raises(LedsError, match=r"already in use.*leds\.pin 17"):
            build_leds(dataclasses.replace(LedsConfig(), kind="pwm", pin=17), pin_factory=factory)
    finally:
        button.close()


def test_every_state_can_have_its_own_led(factory: MockFactory) -> None:
    pins = tuple(f"{state}:{pin}" for pin, state in enumerate(STATES, 2))
    cfg = dataclasses.replace(LedsConfig(), kind="per_state", state_pins=pins)
    leds = build_leds(cfg, pin_factory=factory)
    try:
        for pin, state in enumerate(STATES, 2):
            leds.show(state)
            settle(leds)
            assert leds.pattern == pattern_for(state, cap=1.0)
            others = [factory.pin(p).state for p in range(2, 2 + len(STATES)) if p != pin]
            assert others == pytest.approx([0.0] * len(others))
    finally:
        leds.close()


# --------------------------------------------------------------------------- kind = apa102 (the HATs' LEDs)


class FrameRecorder(MockSPIDevice):
    """gpiozero's mock SPI device on the strip's pins, keeping every frame written to it as bytes.

    A frame ends when gpiozero's SPI lets go of the chip-select line.
    """

    def __init__(self, **pins: object) -> None:
        self.frames: list[bytes] = []
        super().__init__(**pins)

    def on_select(self) -> None:
        if self.select_pin.state == self.select_high:
            self.on_start()
        elif self.rx_buf:
            bits = [int(bit) for bit in self.rx_buf]
            words = (bits[i:i + 8] for i in range(0, len(bits), 8))
            self.frames.append(bytes(int("".join(map(str, word)), 2) for word in words))
            self.rx_buf = []


# (LedsConfig overrides, the pins the strip is on): the ReSpeaker's SPI0 and the Voice Bonnet's GPIO5/6
STRIPS = {
    "respeaker-spi0": ({}, {"clock_pin": 11, "mosi_pin": 10, "select_pin": 7}),
    "bonnet-bitbang": ({"data_pin": 5, "clock_pin": 6}, {"clock_pin": 6, "mosi_pin": 5, "select_pin": 7}),
}


@pytest.fixture
def spi_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockFactory]:
    # Plain MockPins: a strip needs no PWM. gpiozero's software SPI bus resolves Device.pin_factory
    # even when it is handed a factory, so the mock is made the default too.
    pin_factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", pin_factory)
    yield pin_factory
    pin_factory.reset()


@pytest.fixture(params=sorted(STRIPS))
def strip(request: pytest.FixtureRequest, spi_factory: MockFactory) -> Iterator[tuple[Leds, FrameRecorder]]:
    """A three-LED strip built from the config as the installer writes it, and what it was sent."""
    overrides, pins = STRIPS[request.param]
    recorder = FrameRecorder(**pins, pin_factory=spi_factory)
    leds = build_leds(dataclasses.replace(LedsConfig(), kind="apa102", idle_brightness=0.2, **overrides),
                      pin_factory=spi_factory)
    yield leds, recorder
    leds.close()
    recorder.close()


def decode_frame(frame: bytes, count: int = 3) -> list[tuple[float, float, float]]:
    """The light of each LED as RGB 0..1, read from the APA102 layout; checks start and end frames."""
    assert frame[:4] == bytes(4), frame.hex()
    end = frame[4 + 4 * count:]
    assert end and set(end) == {0xFF} and len(end) * 8 >= count / 2, frame.hex()
    lights = []
    for i in range(4, 4 + 4 * count, 4):
        head, blue, green, red = frame[i:i + 4]
        assert head >> 5 == 0b111, frame.hex()
        lights.append(tuple((head & 0x1F) / 31 * channel / 255 for channel in (red, green, blue)))
    return lights  # type: ignore[return-value]


def colours_of(recorder: FrameRecorder) -> list[tuple[float, float, float]]:
    """The colour of every frame so far (all three LEDs always agree)."""
    result = []
    for frame in list(recorder.frames):
        lights = decode_frame(frame)
        assert lights[0] == lights[1] == lights[2]
        result.append(lights[0])
    return result


def near(colour: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    return all(abs(a - b) <= 0.004 for a, b in zip(colour, expected))


def wait_for_colours(recorder: FrameRecorder, *expected: tuple[float, ...]) -> list[tuple[float, ...]]:
    """Wait until the strip has shown each of `expected`, in that order, after the frames seen so far."""
    start = len(recorder.frames)

    def shown_in_order() -> bool:
        rest = iter(colours_of(recorder)[start:])
        return all(any(near(colour, want) for colour in rest) for want in expected)

    wait_until(shown_in_order, f"the strip to show {expected}")
    return colours_of(recorder)[start:]


@pytest.mark.parametrize(
    ("state", "sequence"),
    [
        ("idle", [(0.2, 0.2, 0.2)]),                                   # dim white (idle_brightness 0.2)
        ("listening", [(0, 0, 1)]),                                    # solid blue
        ("thinking", [(0, 1, 1), (0, 0, 0), (0, 1, 1)]),               # cyan pulse
        ("speaking", [(0, 1, 0), (0, 0, 0)]),                          # green breathe
        ("error", [(1, 0, 0), (0, 0, 0), (1, 0, 0)]),                  # red blink
        ("offline", [(1, 0.5, 0), (0, 0, 0)]),                         # amber blink
        ("alarm", [(1, 1, 1), (1, 0, 0), (1, 1, 1), (1, 0, 0)]),       # white flashes over red
        ("muted", [(0.5, 0, 0), (0, 0, 0), (0.5, 0, 0)]),              # half red, a short dark gap
    ],
)
def test_apa102_shows_each_state(strip: tuple[Leds, FrameRecorder], state: str,
                                 sequence: list[tuple[float, ...]]) -> None:
    leds, recorder = strip
    leds.show(state)
    colours = wait_for_colours(recorder, *sequence)
    assert all(max(colour) <= 1.0 for colour in colours)
    if leds.pattern.kind == "pulse":
        in_between = [c for c in colours if 0.05 < max(c) < 0.95]
        assert in_between, "a pulse fades through in-between levels"
    if leds.pattern.kind == "blink":
        assert all(near(c, sequence[0]) or near(c, leds.pattern.off_colour) for c in colours), colours


def test_apa102_night_dims_every_state_and_keeps_its_colour(strip: tuple[Leds, FrameRecorder]) -> None:
    leds, recorder = strip
    leds.show("listening")
    settle(leds)
    leds.set_brightness_cap(0.1)  # what night mode does
    settle(leds)
    assert near(colours_of(recorder)[-1], (0, 0, 0.1))
    head = recorder.frames[-1][4]
    assert head & 0x1F == 4, "night dims with the 5-bit global brightness"
    leds.show("alarm")
    for colour in wait_for_colours(recorder, (0.1, 0.1, 0.1), (0.1, 0, 0)):
        assert max(colour) <= 0.1 + 0.004
    leds.set_brightness_cap(0.0)
    settle(leds)
    assert colours_of(recorder)[-1] == (0.0, 0.0, 0.0)


def test_apa102_writes_nothing_when_nothing_changes(strip: tuple[Leds, FrameRecorder]) -> None:
    leds, recorder = strip
    leds.show("listening")
    settle(leds)
    assert len(recorder.frames) == 1
    leds.show("listening")
    leds.set_brightness_cap(leds.brightness_cap)
    settle(leds)
    assert len(recorder.frames) == 1, "the same state again sent a frame"

    leds.show("idle")
    settle(leds)
    leds.set_brightness_cap(0.0)
    settle(leds)
    leds.show("listening")  # at cap 0 listening is as dark as idle at cap 0: nothing to send
    leds.show("error")
    settle(leds)
    colours = colours_of(recorder)
    assert len(colours) == 3 and near(colours[1], (0.2, 0.2, 0.2)) and colours[2] == (0.0, 0.0, 0.0)


def test_apa102_close_turns_the_strip_dark_and_frees_its_pins(spi_factory: MockFactory) -> None:
    recorder = FrameRecorder(clock_pin=6, mosi_pin=5, select_pin=7, pin_factory=spi_factory)
    cfg = dataclasses.replace(LedsConfig(), kind="apa102", data_pin=5, clock_pin=6)
    leds = build_leds(cfg, pin_factory=spi_factory)
    leds.show("error")
    settle(leds)
    leds.close()
    assert colours_of(recorder)[-1] == (0.0, 0.0, 0.0)
    again = build_leds(cfg, pin_factory=spi_factory)  # the pins were released
    again.close()
    recorder.close()


def test_apa102_count_and_chip_select_come_from_the_config(spi_factory: MockFactory) -> None:
    recorder = FrameRecorder(clock_pin=11, mosi_pin=10, select_pin=8, pin_factory=spi_factory)
    leds = build_leds(dataclasses.replace(LedsConfig(), kind="apa102", count=12, spi_device=0,
                                          colors=("listening:FF8000",)), pin_factory=spi_factory)
    try:
        leds.show("listening")
        settle(leds)
        lights = decode_frame(recorder.frames[-1], 12)
        assert len(recorder.frames[-1]) == 4 + 12 * 4 + 4
        assert all(near(light, (1, 128 / 255, 0)) for light in lights)  # the owner's colour
    finally:
        leds.close()
        recorder.close()


def test_apa102_pins_taken_by_the_button_give_advice(spi_factory: MockFactory) -> None:
    button = Button(6, pin_factory=spi_factory)
    try:
        cfg = dataclasses.replace(LedsConfig(), kind="apa102", data_pin=5, clock_pin=6)
        with pytest.raises(LedsError, match=r"already in use.*leds\.clock_pin 6 and leds\.data_pin 5"):
            build_leds(cfg, pin_factory=spi_factory)
    finally:
        button.close()


def test_apa102_wiring_that_cannot_work_is_refused_before_any_pin(spi_factory: MockFactory) -> None:
    with pytest.raises(LedsError, match=r"leds\.clock_pin must be set too when leds\.data_pin is"):
        build_leds(dataclasses.replace(LedsConfig(), kind="apa102", data_pin=5), pin_factory=spi_factory)
    with pytest.raises(LedsError, match=r"leds\.colors entry 'listening:blue' has colour 'blue'"):
        build_leds(dataclasses.replace(LedsConfig(), kind="apa102", colors=("listening:blue",)),
                   pin_factory=spi_factory)
    assert not spi_factory.pins, "nothing was opened"
