"""The button: debounce and gestures with explicit times, gpiozero's MockFactory, a keyboard on a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import termios
import threading
import time
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.hw.button import ButtonError, GpioButton
from appliance.hw.gestures import Gesture, GestureTracker
from appliance.settings.schema import ButtonConfig
from appliance.hw.keyboard import HELP_LINE, KeyboardButton

PRESS, TAP, HOLD, LONG = Gesture.PRESS, Gesture.RELEASE_TAP, Gesture.RELEASE_HOLD, Gesture.LONG_HOLD
MUTE = Gesture.MUTE_HOLD

CFG = dataclasses.replace(ButtonConfig(), debounce_ms=30, tap_max_ms=400, long_hold_s=5.0, mute_hold_s=10.0)
WAIT_S = 5.0  # generous: only reached when a test is failing


# --------------------------------------------------------------------------- the pure tracker


def run(
    edges: Iterable[tuple[float, bool]], cfg: ButtonConfig = CFG, until: float = 60.0
) -> list[tuple[Gesture, float]]:
    """Play raw edges through a tracker the way the loop does: poll exactly at each deadline.

    Returns each gesture with the time it was reported.
    """
    out: list[tuple[Gesture, float]] = []
    now = [0.0]
    tracker = GestureTracker(cfg, lambda g: out.append((g, now[0])), clock=lambda: now[0])

    def poll_until(t: float) -> None:
        while (deadline := tracker.next_deadline()) is not None and deadline <= t:
            now[0] = deadline
            tracker.poll(deadline)

    for at, pressed in edges:
        poll_until(at)
        now[0] = at
        tracker.edge(pressed, at)
    poll_until(until)
    return out


def gestures(reported: list[tuple[Gesture, float]]) -> list[Gesture]:
    return [g for g, _ in reported]


def bounces(start: float, level: bool, n: int = 5, span: float = 0.010) -> list[tuple[float, bool]]:
    """n edges within `span` seconds that end on `level`: what a switch contact does."""
    step = span / (n - 1)
    return [(start + i * step, level if (n - 1 - i) % 2 == 0 else not level) for i in range(n)]


def test_a_clean_60ms_tap_is_a_press_then_a_tap_release() -> None:
    reported = run([(1.0, True), (1.060, False)])
    assert gestures(reported) == [PRESS, TAP]
    (_, pressed_at), (_, released_at) = reported
    assert pressed_at == pytest.approx(1.030)  # one debounce after the edge
    assert released_at == pytest.approx(1.090)


def test_a_15s_hold_is_a_press_then_a_hold_release() -> None:
    assert gestures(run([(1.0, True), (2.5, False)])) == [PRESS, HOLD]


def test_the_tap_limit_is_measured_between_the_edges() -> None:
    assert gestures(run([(0.0, True), (0.399, False)])) == [PRESS, TAP]
    assert gestures(run([(0.0, True), (0.400, False)])) == [PRESS, HOLD]


def test_a_bouncy_press_is_one_press_reported_after_the_bounce_settles() -> None:
    edges = bounces(1.0, True)  # 1.000 .. 1.010, ends pressed
    assert len(edges) == 5
    reported = run(edges, until=2.0)  # still held, well before the long hold
    assert gestures(reported) == [PRESS]
    assert reported[0][1] == pytest.approx(1.010 + 0.030)


def test_a_bouncy_release_is_one_release_and_never_a_second_press() -> None:
    edges = [(1.0, True), *bounces(2.0, False)]
    reported = run(edges)
    assert gestures(reported) == [PRESS, HOLD]
    assert reported[1][1] == pytest.approx(2.010 + 0.030)


def test_a_bouncy_tap_keeps_both_halves() -> None:
    edges = [*bounces(0.0, True), *bounces(0.060, False)]
    assert gestures(run(edges)) == [PRESS, TAP]


def test_a_52s_hold_is_press_long_hold_once_then_a_hold_release() -> None:
    reported = run([(1.0, True), (6.2, False)])
    assert gestures(reported) == [PRESS, LONG, HOLD]
    assert reported[1][1] == pytest.approx(6.0)  # 5 s after the press, while still held


def test_a_glitch_shorter_than_the_debounce_is_nothing() -> None:
    assert run([(1.0, True), (1.020, False)]) == []
    # and a glitch during a hold neither releases nor presses again
    assert gestures(run([(1.0, True), (2.0, False), (2.010, True), (3.0, False)])) == [PRESS, HOLD]


def test_a_release_that_is_still_settling_at_the_long_hold_time_wins() -> None:
    # up at 4.99 s, settles at 5.02 s: the press lasted 4.99 s, so no long hold
    assert gestures(run([(0.0, True), (4.99, False)])) == [PRESS, HOLD]
    out: list[Gesture] = []
    tracker = GestureTracker(CFG, out.append, clock=lambda: 0.0)
    tracker.edge(True, 0.0)
    tracker.edge(False, 4.99)
    tracker.poll(5.0)  # polled early, e.g. because another edge came in
    tracker.poll(5.01)
    assert out == [PRESS]
    tracker.poll(5.03)
    assert out == [PRESS, HOLD]


def test_a_glitch_across_the_long_hold_time_delays_it_until_the_finger_is_back() -> None:
    reported = run([(0.0, True), (4.995, False), (5.005, True), (5.5, False)])
    assert gestures(reported) == [PRESS, LONG, HOLD]
    assert reported[1][1] == pytest.approx(5.005)


def test_a_late_poll_reports_what_happened_in_order() -> None:
    """The loop was busy: the press settled long before anyone polled; then the edge of release came."""
    out: list[Gesture] = []
    tracker = GestureTracker(CFG, out.append, clock=lambda: 0.0)
    tracker.edge(True, 0.0)
    tracker.edge(False, 0.2)  # the press had settled at 0.03, before this edge
    tracker.poll(0.3)
    assert out == [PRESS, TAP]


def test_an_edge_stamped_before_a_poll_that_already_ran_does_not_go_back_in_time() -> None:
    out: list[Gesture] = []
    tracker = GestureTracker(CFG, out.append, clock=lambda: 0.0)
    tracker.edge(True, 0.0)
    tracker.poll(0.031)  # PRESS
    tracker.edge(False, 0.029)  # stamped on gpiozero's thread just before the poll ran
    assert tracker.next_deadline() == pytest.approx(0.061)
    tracker.poll(0.1)
    assert out == [PRESS, TAP]


def test_no_debounce_reports_at_the_edge() -> None:
    reported = run([(1.0, True), (1.05, False)], dataclasses.replace(CFG, debounce_ms=0))
    assert reported == [(PRESS, 1.0), (TAP, 1.05)]


def test_next_deadline_is_none_when_nothing_can_happen() -> None:
    tracker = GestureTracker(CFG, lambda g: None, clock=lambda: 0.0)
    assert tracker.next_deadline() is None
    tracker.edge(True, 1.0)
    assert tracker.next_deadline() == pytest.approx(1.03)
    tracker.poll(1.03)
    assert tracker.next_deadline() == pytest.approx(6.0)  # the long hold
    tracker.poll(6.0)
    assert tracker.next_deadline() == pytest.approx(11.0)  # the mute hold
    tracker.poll(11.0)
    assert tracker.next_deadline() is None  # held on, nothing more to report until it moves


def test_a_12s_hold_is_press_long_hold_mute_hold_once_then_a_hold_release() -> None:
    reported = run([(1.0, True), (13.0, False)])
    assert gestures(reported) == [PRESS, LONG, MUTE, HOLD]
    assert reported[1][1] == pytest.approx(6.0)
    assert reported[2][1] == pytest.approx(11.0)  # 10 s after the press, while still held


def test_letting_go_before_the_mute_hold_time_is_no_mute() -> None:
    assert gestures(run([(0.0, True), (9.9, False)])) == [PRESS, LONG, HOLD]
    # a bounce at the mute hold time does not end the press, and the mute hold waits for the finger
    reported = run([(0.0, True), (9.995, False), (10.005, True), (10.5, False)])
    assert gestures(reported) == [PRESS, LONG, MUTE, HOLD]
    assert reported[2][1] == pytest.approx(10.005)


def test_a_mute_hold_never_comes_before_the_long_hold() -> None:
    # a config built in code may skip the loader's check that the mute hold is the longer one
    crossed = dataclasses.replace(CFG, long_hold_s=5.0, mute_hold_s=3.0)
    assert gestures(run([(0.0, True), (6.0, False)], crossed)) == [PRESS, LONG, MUTE, HOLD]


ops = st.lists(
    st.tuples(
        st.sampled_from(["edge", "poll"]),
        st.booleans(),  # the level, for an edge
        st.floats(min_value=0.0, max_value=0.2),  # time since the previous op
        st.floats(min_value=0.0, max_value=0.05),  # how stale an edge's stamp is
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, debounce_ms=st.integers(0, 50), tap_max_ms=st.integers(100, 500), long_ms=st.integers(1, 300),
       mute_ms=st.integers(1, 600))
def test_any_edge_sequence_gives_alternating_press_and_release(
    ops: list[tuple[str, bool, float, float]], debounce_ms: int, tap_max_ms: int, long_ms: int, mute_ms: int
) -> None:
    cfg = dataclasses.replace(CFG, debounce_ms=debounce_ms, tap_max_ms=tap_max_ms, long_hold_s=long_ms / 1000,
                              mute_hold_s=mute_ms / 1000)
    out: list[Gesture] = []
    tracker = GestureTracker(cfg, out.append, clock=lambda: 0.0)
    now, level = 0.0, False
    for kind, pressed, dt, stale in ops:
        now += dt
        if kind == "edge":
            tracker.edge(pressed, max(0.0, now - stale))
            level = pressed
        else:
            tracker.poll(now)
    for _ in range(4):  # let everything settle (a settle can arm the long hold, which arms the mute hold)
        deadline = tracker.next_deadline()
        if deadline is not None:
            tracker.poll(deadline + 1.0)

    down = False
    long_holds = mute_holds = 0
    for g in out:
        if g is PRESS:
            assert not down, f"two presses without a release: {out}"
            down, long_holds, mute_holds = True, 0, 0
        elif g is LONG:
            assert down, f"a long hold outside a press: {out}"
            long_holds += 1
            assert long_holds == 1, f"two long holds in one press: {out}"
        elif g is MUTE:
            assert down and long_holds == 1, f"a mute hold outside a press or before its long hold: {out}"
            mute_holds += 1
            assert mute_holds == 1, f"two mute holds in one press: {out}"
        else:
            assert down, f"a release without a press: {out}"
            down = False
    # nothing is left stuck: the gestures end where the finger ended
    assert down == level == tracker.pressed
    assert tracker.next_deadline() is None


# --------------------------------------------------------------------------- GpioButton on MockFactory


@pytest.fixture
def factory():
    from gpiozero.pins.mock import MockFactory

    f = MockFactory()
    yield f
    f.close()


class Recorder:
    """Collects gestures on the loop, with the thread each one arrived on."""

    def __init__(self) -> None:
        self.gestures: list[Gesture] = []
        self.threads: set[int] = set()
        self._changed = asyncio.Event()

    def __call__(self, gesture: Gesture) -> None:
        self.gestures.append(gesture)
        self.threads.add(threading.get_ident())
        self._changed.set()

    async def until(self, *expected: Gesture) -> None:
        """Wait until exactly `expected` has arrived (fails fast on anything else)."""

        async def wait() -> None:
            while True:
                assert self.gestures == list(expected[: len(self.gestures)]), self.gestures
                if len(self.gestures) == len(expected):
                    return
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


FAST = dataclasses.replace(ButtonConfig(), pin=17, debounce_ms=5, tap_max_ms=400, long_hold_s=5.0)


def test_gpio_tap_from_the_test_thread_arrives_on_the_loop(factory) -> None:
    pin = factory.pin(17)

    async def main() -> tuple[list[Gesture], set[int], int]:
        rec = Recorder()
        with GpioButton(FAST, asyncio.get_running_loop(), rec, pin_factory=factory):
            pin.drive_low()  # pressed: the pull-up is on and the button shorts to ground
            await rec.until(PRESS)
            pin.drive_high()
            await rec.until(PRESS, TAP)
        return rec.gestures, rec.threads, threading.get_ident()

    got, threads, loop_thread = asyncio.run(main())
    assert got == [PRESS, TAP]
    assert threads == {loop_thread}


def test_gpio_hold_driven_from_another_thread_gives_long_hold_then_hold_release(factory) -> None:
    pin = factory.pin(17)
    # no debounce: the gesture comes straight out of the edge, which must still be on the loop
    cfg = dataclasses.replace(FAST, debounce_ms=0, tap_max_ms=20, long_hold_s=0.05)
    driver_threads: set[int] = set()

    def drive(level: bool) -> None:
        driver_threads.add(threading.get_ident())
        pin.drive_low() if level else pin.drive_high()

    async def main() -> tuple[list[Gesture], set[int], int]:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        with GpioButton(cfg, loop, rec, pin_factory=factory):
            await loop.run_in_executor(None, drive, True)
            await rec.until(PRESS, LONG)  # the long hold comes from the loop's own timer
            await loop.run_in_executor(None, drive, False)
            await rec.until(PRESS, LONG, HOLD)
        return rec.gestures, rec.threads, threading.get_ident()

    got, threads, loop_thread = asyncio.run(main())
    assert got == [PRESS, LONG, HOLD]
    assert threads == {loop_thread}
    assert loop_thread not in driver_threads


def test_gpio_bounces_from_another_thread_give_one_press_and_one_release(factory) -> None:
    pin = factory.pin(17)
    cfg = dataclasses.replace(FAST, debounce_ms=50)  # room for a busy machine between the bounces

    def bounce(final_low: bool) -> None:
        for _ in range(3):
            pin.drive_low()
            pin.drive_high()
        if final_low:
            pin.drive_low()

    async def main() -> list[Gesture]:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        with GpioButton(cfg, loop, rec, pin_factory=factory):
            await loop.run_in_executor(None, bounce, True)
            await rec.until(PRESS)
            await loop.run_in_executor(None, bounce, False)
            await rec.until(PRESS, TAP)
            # a third, clean press proves nothing else was pending in between
            pin.drive_low()
            await rec.until(PRESS, TAP, PRESS)
        return rec.gestures

    assert asyncio.run(main()) == [PRESS, TAP, PRESS]


def test_gpio_pull_down_wiring_is_pressed_when_high(factory) -> None:
    pin = factory.pin(22)
    cfg = dataclasses.replace(FAST, pin=22, pull_up=False)

    async def main() -> list[Gesture]:
        rec = Recorder()
        with GpioButton(cfg, asyncio.get_running_loop(), rec, pin_factory=factory):
            pin.drive_high()
            await rec.until(PRESS)
            pin.drive_low()
            await rec.until(PRESS, TAP)
        return rec.gestures

    assert asyncio.run(main()) == [PRESS, TAP]


def test_gpio_button_held_at_start_counts_only_after_it_is_let_go(factory) -> None:
    pin = factory.pin(17)
    pin.drive_low()  # held (or stuck) when the daemon starts

    async def main() -> list[Gesture]:
        rec = Recorder()
        with GpioButton(FAST, asyncio.get_running_loop(), rec, pin_factory=factory):
            pin.drive_high()
            pin.drive_low()
            await rec.until(PRESS)
            pin.drive_high()
            await rec.until(PRESS, TAP)
        return rec.gestures

    assert asyncio.run(main()) == [PRESS, TAP]


def test_gpio_close_releases_the_pin_and_drops_pending_edges(factory) -> None:
    pin = factory.pin(17)

    async def main() -> tuple[list[Gesture], list[Gesture], float]:
        loop = asyncio.get_running_loop()
        first = Recorder()
        button = GpioButton(FAST, loop, first, pin_factory=factory)
        pin.drive_low()  # handed to the loop, still settling when we close
        button.close()
        button.close()
        # the pin is free again: a second button on it works
        second = Recorder()
        button = GpioButton(FAST, loop, second, pin_factory=factory)
        pin.drive_high()
        pin.drive_low()
        await second.until(PRESS)
        started = time.monotonic()
        button.close()  # while held: must not stall the loop (shutdown has 2 s in all)
        return first.gestures, second.gestures, time.monotonic() - started

    first, second, close_s = asyncio.run(main())
    assert first == []
    assert second == [PRESS]
    assert close_s < 0.1


def test_gpio_pin_in_use_is_one_line_that_names_the_pin(factory) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with GpioButton(FAST, loop, lambda g: None, pin_factory=factory):
            with pytest.raises(ButtonError) as err:
                GpioButton(FAST, loop, lambda g: None, pin_factory=factory)
        message = str(err.value)
        assert "GPIO17" in message and "in use" in message and "button.pin" in message
        assert "\n" not in message

    asyncio.run(main())


def test_gpio_without_a_pin_factory_says_to_use_the_keyboard(monkeypatch) -> None:
    from gpiozero import Device

    monkeypatch.setattr(Device, "pin_factory", None)  # as on a laptop: nothing chosen yet
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-gpio-library")

    async def main() -> None:
        with pytest.raises(ButtonError) as err:
            GpioButton(FAST, asyncio.get_running_loop(), lambda g: None)
        message = str(err.value)
        assert "--keyboard" in message and "button.enabled = false" in message
        assert "\n" not in message

    asyncio.run(main())


def test_a_failing_gesture_handler_does_not_stop_the_button(factory) -> None:
    pin = factory.pin(17)

    async def main() -> list[Gesture]:
        rec = Recorder()

        def flaky(g: Gesture) -> None:
            rec(g)
            if g is PRESS:
                raise RuntimeError("conductor bug")

        with GpioButton(FAST, asyncio.get_running_loop(), flaky, pin_factory=factory):
            pin.drive_low()
            await rec.until(PRESS)
            pin.drive_high()
            await rec.until(PRESS, TAP)
        return rec.gestures

    assert asyncio.run(main()) == [PRESS, TAP]


# --------------------------------------------------------------------------- KeyboardButton on a pty


@pytest.fixture
def pty():
    master, slave = os.openpty()
    terminal = os.fdopen(slave, "rb", buffering=0)
    yield master, terminal
    terminal.close()
    os.close(master)


def test_keyboard_keys_become_gestures_and_the_terminal_is_restored(pty) -> None:
    master, terminal = pty
    before = termios.tcgetattr(terminal.fileno())
    printed: list[str] = []
    quits: list[bool] = []

    async def main() -> tuple[list[Gesture], list[object]]:
        rec = Recorder()
        loop = asyncio.get_running_loop()
        button = KeyboardButton(loop, rec, stream=terminal, on_quit=lambda: quits.append(True), printer=printed.append)
        try:
            during = termios.tcgetattr(terminal.fileno())
            os.write(master, b" ")
            await rec.until(PRESS, TAP)
            os.write(master, b"\n")
            await rec.until(PRESS, TAP, PRESS)
            assert button.holding
            os.write(master, b"\n")
            await rec.until(PRESS, TAP, PRESS, HOLD)
            os.write(master, b"xn")  # unknown keys are ignored
            await rec.until(PRESS, TAP, PRESS, HOLD, PRESS, LONG, HOLD)
        finally:
            button.close()
        return rec.gestures, during

    got, during = asyncio.run(main())
    assert got == [PRESS, TAP, PRESS, HOLD, PRESS, LONG, HOLD]
    assert printed == [HELP_LINE]
    assert quits == []
    lflag = during[3]
    assert not lflag & termios.ICANON and not lflag & termios.ECHO  # keys arrive one by one, unechoed
    assert termios.tcgetattr(terminal.fileno()) == before


def test_keyboard_q_asks_to_quit_and_the_terminal_comes_back_after_an_error(pty) -> None:
    master, terminal = pty
    before = termios.tcgetattr(terminal.fileno())

    async def main() -> None:
        quit_asked = asyncio.Event()
        loop = asyncio.get_running_loop()
        with KeyboardButton(loop, lambda g: None, stream=terminal, on_quit=quit_asked.set, printer=lambda line: None):
            os.write(master, b"q")
            await asyncio.wait_for(quit_asked.wait(), WAIT_S)
            raise KeyError("the daemon fell over")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert termios.tcgetattr(terminal.fileno()) == before


def test_keyboard_space_while_holding_is_ignored(pty) -> None:
    master, terminal = pty

    async def main() -> list[Gesture]:
        rec = Recorder()
        with KeyboardButton(asyncio.get_running_loop(), rec, stream=terminal, printer=lambda line: None):
            os.write(master, b"\n \n")  # a held button cannot also be tapped
            await rec.until(PRESS, HOLD)
        return rec.gestures

    assert asyncio.run(main()) == [PRESS, HOLD]


def test_keyboard_without_a_terminal_is_one_clear_line() -> None:
    read_end, write_end = os.pipe()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with os.fdopen(read_end, "rb") as pipe, pytest.raises(ButtonError) as err:
            KeyboardButton(loop, lambda g: None, stream=pipe, printer=lambda line: None)
        assert "terminal" in str(err.value) and "appliance ctl" in str(err.value)

        with pytest.raises(ButtonError):
            KeyboardButton(loop, lambda g: None, stream=io.StringIO(), printer=lambda line: None)

    try:
        asyncio.run(main())
    finally:
        os.close(write_end)


def test_a_press_on_the_control_socket_counts_at_once_and_a_tap_is_a_tap() -> None:
    """`ctl press` has no contact to bounce: a barge-in by socket must not wait out debounce_ms."""
    from appliance.hw.button import VirtualButton

    async def scenario() -> tuple[list[Gesture], list[Gesture]]:
        loop = asyncio.get_running_loop()
        seen: list[Gesture] = []
        tapped = asyncio.Event()

        def on_gesture(gesture: Gesture) -> None:
            seen.append(gesture)
            if seen.count(Gesture.RELEASE_TAP) == 2:
                tapped.set()

        with VirtualButton(ButtonConfig(debounce_ms=200), loop, on_gesture) as button:
            button.set_pressed(True)
            at_once = list(seen)
            button.set_pressed(False)
            button.tap()
            await asyncio.wait_for(tapped.wait(), 2)
        return at_once, seen

    at_once, seen = asyncio.run(scenario())
    assert at_once == [Gesture.PRESS]
    assert seen == [Gesture.PRESS, Gesture.RELEASE_TAP, Gesture.PRESS, Gesture.RELEASE_TAP]
