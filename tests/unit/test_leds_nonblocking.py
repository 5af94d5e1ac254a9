"""The status LEDs never hold up their caller: gpiozero runs on the Leds' own worker thread.

The pins are gpiozero's MockPWMPin with a gate: while a pin's gate is closed, every write to
it blocks, as a real `off()` does while it joins gpiozero's blink thread. An APA102 strip gets
the same treatment with a gated SPI device, as a slow bit-banged write would be.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator

import pytest
from gpiozero import PWMLED
from gpiozero.pins.mock import MockFactory, MockPWMPin

from appliance.hw import leds as leds_module
from appliance.hw.led_outputs import StripOutput
from appliance.settings.schema import LedsConfig
from appliance.hw.leds import Leds, build_leds

TIMEOUT_S = 5.0
GATE_LIMIT_S = 30.0  # a closed gate gives up after this, so a broken test cannot hang the run


class GatedPin(MockPWMPin):
    """A mock PWM pin whose writes wait while `gate` is clear (it starts open)."""

    def __init__(self, factory: MockFactory, info: object) -> None:
        super().__init__(factory, info)
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()  # set once a write is waiting at the closed gate
        self.gave_up = False

    def _set_state(self, value: float) -> None:
        if not self.gate.is_set():
            self.blocked.set()
            if not self.gate.wait(GATE_LIMIT_S):
                self.gave_up = True
        super()._set_state(value)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pin_factory = MockFactory(pin_class=GatedPin)
    opened: list[GatedPin] = []
    original_pin = pin_factory.pin

    def pin(name: object, *args: object, **kwargs: object) -> GatedPin:
        made = original_pin(name, *args, **kwargs)
        opened.append(made)
        return made

    pin_factory.pin = pin  # type: ignore[method-assign]
    yield pin_factory
    for made in opened:
        made.gate.set()  # never leave a worker stuck behind a test
    pin_factory.reset()


@pytest.fixture
def make(factory: MockFactory) -> Iterator[Callable[..., Leds]]:
    built: list[Leds] = []

    def build(**overrides: object) -> Leds:
        leds = build_leds(dataclasses.replace(LedsConfig(), **overrides), pin_factory=factory)
        built.append(leds)
        return leds

    yield build
    for leds in built:
        leds.close()


def test_show_returns_while_gpiozero_is_stuck_and_the_last_state_shown_wins(
    make: Callable[..., Leds], factory: MockFactory
) -> None:
    leds = make(kind="pwm", pin=12, max_brightness=0.5)
    pin: GatedPin = factory.pin(12)
    leds.show("thinking")
    assert leds.wait_idle(TIMEOUT_S)

    pin.gate.clear()
    leds.show("error")  # the worker takes this one and gets stuck inside gpiozero
    assert pin.blocked.wait(TIMEOUT_S), "the worker never reached the pin"
    for state in ("alarm", "offline", "speaking", "listening"):
        leds.show(state)  # would hang here (until the gate gives up) if show waited for the worker
    assert not pin.gate.is_set() and not pin.gave_up, "show() returned while gpiozero was still stuck"
    assert leds.state == "listening" and leds.pattern.kind == "solid"
    assert leds.wait_idle(0.05) is False, "the worker is still busy"

    pin.gate.set()
    assert leds.wait_idle(TIMEOUT_S)
    assert pin.state == pytest.approx(0.5), "the pin shows the last state: solid listening at the cap"
    assert not pin.gave_up


def test_a_burst_of_states_never_flashes_the_stale_ones(make: Callable[..., Leds], factory: MockFactory) -> None:
    pins = {"listening": 19, "error": 5, "alarm": 6, "offline": 13, "idle": 26}
    leds = make(kind="per_state", state_pins=tuple(f"{state}:{pin}" for state, pin in pins.items()),
                idle_brightness=0.3)
    gated: GatedPin = factory.pin(pins["listening"])
    stale = [factory.pin(pins[state]) for state in ("error", "alarm", "offline")]

    gated.gate.clear()
    leds.show("listening")  # stuck while lighting the listening LED
    assert gated.blocked.wait(TIMEOUT_S)
    for state in ("error", "alarm", "offline", "idle"):
        leds.show(state)  # each replaces the one still waiting: only the newest state matters
    gated.gate.set()
    assert leds.wait_idle(TIMEOUT_S)

    assert factory.pin(pins["idle"]).state == pytest.approx(0.3)
    assert gated.state == pytest.approx(0.0)
    for pin in stale:
        assert max(float(s.state) for s in list(pin.states)) == 0.0, "a stale state lit its LED"


def test_close_turns_off_on_the_worker_and_releases_the_pins(make: Callable[..., Leds], factory: MockFactory) -> None:
    leds = make(kind="rgb", rgb_pins=(5, 6, 13))
    leds.show("alarm")
    leds.close()
    assert [factory.pin(p).state for p in (5, 6, 13)] == [0.0, 0.0, 0.0]
    for p in (5, 6, 13):
        PWMLED(p, pin_factory=factory).close()
    leds.show("thinking")  # after close only the state is recorded
    assert leds.state == "thinking" and leds.wait_idle(0)


def test_close_gives_up_on_a_stuck_worker_after_a_bounded_wait(
    make: Callable[..., Leds], factory: MockFactory, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leds_module, "_CLOSE_TIMEOUT_S", 0.2)
    leds = make(kind="pwm", pin=12)
    pin: GatedPin = factory.pin(12)
    pin.gate.clear()
    leds.show("alarm")
    assert pin.blocked.wait(TIMEOUT_S)
    with caplog.at_level(logging.WARNING, logger="appliance.hw.leds"):
        leds.close()
    assert not pin.gave_up, "close() waited for gpiozero instead of giving up"
    assert any("did not turn off" in record.getMessage() for record in caplog.records)
    pin.gate.set()


def test_without_leds_nothing_waits(make: Callable[..., Leds]) -> None:
    leds = make(kind="none")
    leds.show("speaking")
    assert leds.wait_idle(0) and leds.state == "speaking"


class GatedStrip:
    """An SPI device for an APA102 strip whose writes wait while `gate` is clear; keeps the frames."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()
        self.gave_up = False
        self.frames: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.gate.is_set():
            self.blocked.set()
            if not self.gate.wait(GATE_LIMIT_S):
                self.gave_up = True
        self.frames.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def blue_of(frame: bytes) -> tuple[int, int, int, int]:
    """The first LED's (brightness, red, green, blue) from an APA102 frame."""
    head, blue, green, red = frame[4:8]
    return head & 0x1F, red, green, blue


@pytest.fixture
def strip_leds() -> Iterator[tuple[Leds, GatedStrip]]:
    device = GatedStrip()
    leds = Leds(dataclasses.replace(LedsConfig(), kind="apa102"), StripOutput(device, 3))
    yield leds, device
    device.gate.set()
    leds.close()


def test_a_stuck_strip_write_never_holds_up_show_and_the_last_state_wins(
    strip_leds: tuple[Leds, GatedStrip],
) -> None:
    leds, device = strip_leds
    leds.show("thinking")  # a pulse: the worker keeps writing frames on its own
    assert leds.wait_idle(TIMEOUT_S)
    device.gate.clear()
    assert device.blocked.wait(TIMEOUT_S), "the pulse never wrote another frame"
    for state in ("error", "alarm", "offline", "speaking", "listening"):
        leds.show(state)  # would hang here if show waited for the SPI write
    assert not device.gave_up, "show() waited for the stuck write"
    assert leds.state == "listening"
    stuck_at = len(device.frames)

    device.gate.set()
    assert leds.wait_idle(TIMEOUT_S)
    after = [blue_of(frame) for frame in device.frames[stuck_at:]]
    assert after[-1] == (31, 0, 0, 255), "the strip ends on solid blue: listening"
    # the write that was stuck finishes the pulse's step; the states shown meanwhile never reach the strip
    stale = [frame for frame in after if frame[1] != 0]
    assert not stale, f"a stale red, amber or white state reached the strip: {stale}"


def test_close_gives_up_on_a_stuck_strip_write_after_a_bounded_wait(
    strip_leds: tuple[Leds, GatedStrip], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leds_module, "_CLOSE_TIMEOUT_S", 0.2)
    leds, device = strip_leds
    device.gate.clear()
    leds.show("alarm")
    assert device.blocked.wait(TIMEOUT_S)
    with caplog.at_level(logging.WARNING, logger="appliance.hw.leds"):
        leds.close()
    assert not device.gave_up, "close() waited for the SPI write instead of giving up"
    assert any("did not turn off" in record.getMessage() for record in caplog.records)
    device.gate.set()


def test_closing_a_strip_sends_a_dark_frame_from_the_worker(strip_leds: tuple[Leds, GatedStrip]) -> None:
    leds, device = strip_leds
    leds.show("error")
    assert leds.wait_idle(TIMEOUT_S)
    leds.close()
    assert blue_of(device.frames[-1]) == (0, 0, 0, 0) and device.closed
