"""Fixtures shared by the end-to-end tests: the paced sound card and the mock GPIO."""

from __future__ import annotations

import pytest

from rigs import PulseRig, pulse_available


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio (paced in real time) for the tests of one module."""
    rig = PulseRig(tmp_path_factory.mktemp("pulse"))
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="module")
def hotplug_rig(tmp_path_factory):
    """A private PulseAudio whose sinks can be unplugged and plugged back (PulseRig(hotplug=True))."""
    assert pulse_available(), "PulseAudio, pacat/parecord and the ALSA pulse plugin are needed for these tests"
    rig = PulseRig(tmp_path_factory.mktemp("pulse-hotplug"), hotplug=True)
    rig.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            rig.activate(mp)  # before any PyAudio() is created
            yield rig
    finally:
        rig.restore()
        rig.stop()


@pytest.fixture
def gpio():
    """gpiozero's own MockFactory, with PWM-capable pins for the LEDs."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    previous = Device.pin_factory
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous
