"""sd_notify as systemd receives it: real AF_UNIX datagram sockets, by path and in the abstract namespace."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.ipc import sdnotify
from appliance.ipc.sdnotify import Check, Watchdog

WAIT = 5.0


class Receiver:
    """The systemd side: a datagram socket that collects notifications."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(WAIT)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def drain_until(self, marker: str) -> list[str]:
        """Every message before `marker` (which the test itself sends), in arrival order."""
        seen = []
        while (message := self.next()) != marker:
            seen.append(message)
        return seen

    def close(self) -> None:
        self.sock.close()


def send_marker(address: str, text: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), address)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sdnotify, "_error_logged", False)


@pytest.fixture
def path_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, str]]:
    address = str(tmp_path / "notify.sock")
    receiver = Receiver(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield receiver, address
    receiver.close()


def test_messages_arrive_on_a_path_socket(path_receiver: tuple[Receiver, str]) -> None:
    receiver, _ = path_receiver
    assert sdnotify.ready("connecting") is True
    assert receiver.next() == "READY=1\nSTATUS=connecting"
    assert sdnotify.status("idle\nWATCHDOG=1") is True
    assert receiver.next() == "STATUS=idle WATCHDOG=1", "a newline in the text cannot add an assignment"
    assert sdnotify.watchdog() is True
    assert receiver.next() == "WATCHDOG=1"
    assert sdnotify.stopping() is True
    assert receiver.next() == "STOPPING=1"
    assert sdnotify.ready() is True
    assert receiver.next() == "READY=1"


def test_messages_arrive_on_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    receiver = Receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready("idle") is True
        assert receiver.next() == "READY=1\nSTATUS=idle"
        assert sdnotify.watchdog() is True
        assert receiver.next() == "WATCHDOG=1"
        assert sdnotify.stopping() is True
        assert receiver.next() == "STOPPING=1"
    finally:
        receiver.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.watchdog() is False


def test_a_broken_socket_never_raises_and_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.DEBUG, logger="appliance.ipc.sdnotify"):
        assert sdnotify.watchdog() is False
        assert sdnotify.watchdog() is False
        assert sdnotify.status("idle") is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "gone.sock" in warnings[0].getMessage()

    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


def test_watchdog_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None, "the watchdog belongs to another process"
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert sdnotify.watchdog_interval() is None


def test_watchdog_stops_pinging_while_a_check_fails_and_resumes_after(
    path_receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    receiver, address = path_receiver
    capture_alive = [True]
    failing_evaluations = 0
    enough_failures: asyncio.Event | None = None

    def capture_seen() -> bool:
        nonlocal failing_evaluations
        if not capture_alive[0]:
            failing_evaluations += 1
            if failing_evaluations == 1:
                send_marker(address, "MARK: check now failing")
            if failing_evaluations == 4:
                assert enough_failures is not None
                enough_failures.set()
        return capture_alive[0]

    def playback_seen() -> bool:
        return True

    async def scenario() -> None:
        nonlocal enough_failures
        enough_failures = asyncio.Event()
        dog = Watchdog(0.01, [Check("playback callback seen within 2 s", playback_seen),
                              Check("capture callback seen within 2 s", capture_seen)])
        task = asyncio.create_task(dog.run())
        try:
            for _ in range(2):
                assert await asyncio.to_thread(receiver.next) == "WATCHDOG=1"
            capture_alive[0] = False
            await asyncio.wait_for(enough_failures.wait(), WAIT)
            send_marker(address, "END")
            after_failure = (await asyncio.to_thread(receiver.drain_until, "MARK: check now failing"),
                             await asyncio.to_thread(receiver.drain_until, "END"))
            assert set(after_failure[0]) <= {"WATCHDOG=1"}
            assert after_failure[1] == [], "no ping while the capture check fails"
            assert dog.failing == "capture callback seen within 2 s"

            capture_alive[0] = True
            assert await asyncio.to_thread(receiver.next) == "WATCHDOG=1", "pings resume after recovery"
            assert dog.failing is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="appliance.ipc.sdnotify"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "the failure is logged once, not on every tick"
    assert "capture callback seen within 2 s" in errors[0]


def test_a_check_that_raises_counts_as_failing(path_receiver: tuple[Receiver, str]) -> None:
    receiver, address = path_receiver

    def broken_probe() -> bool:
        raise OSError("device vanished")

    dog = Watchdog(1.0, [broken_probe])
    assert dog.tick() is False
    assert dog.failing is not None and "broken_probe" in dog.failing and "device vanished" in dog.failing
    send_marker(address, "END")
    assert receiver.drain_until("END") == []
