"""Timers as a user of the device sees them: they survive restarts, ring on time, stop, and cope with clock jumps.

Time is driven by a fake wall clock and a fake monotonic clock; the service runs on a real asyncio loop
with a 10 ms check interval.  Tests wait on events (a ring, a change, a number of clock reads by the
service's checks) with timeouts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from appliance.settings.schema import TimersConfig
from appliance.timers.model import Timer, TimerError
from appliance.timers.service import TimerService
from appliance.timers.store import TIMERS_FILE, TimerStore

WAIT = 3.0
CHECK = 0.01
START = 1_800_000_000.0  # some wall-clock epoch in 2027


class FakeClock:
    """A wall clock and a monotonic clock the test moves; counts how often the service reads the wall."""

    def __init__(self) -> None:
        self.wall_now = START
        self.mono_now = 500.0
        self.reads = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def wall(self) -> float:
        self.reads += 1
        for target, event in self._waiters:
            if self.reads >= target:
                event.set()
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        """Real time passes: both clocks move."""
        self.wall_now += seconds
        self.mono_now += seconds

    def jump_wall(self, seconds: float) -> None:
        """Only the wall clock moves (NTP stepping it)."""
        self.wall_now += seconds

    async def checks(self, n: int = 5) -> None:
        """Wait until the service has looked at the clock `n` more times (its checks keep running)."""
        event = asyncio.Event()
        waiter = (self.reads + n, event)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), WAIT)
        finally:
            self._waiters.remove(waiter)


class Harness:
    """A TimerService on the running loop with recording callbacks."""

    def __init__(self, path: Path, clock: FakeClock, cfg: TimersConfig | None = None) -> None:
        self.clock = clock
        self.rang: list[Timer] = []
        self.rang_event = asyncio.Event()
        self.changes = 0
        self.changed_event = asyncio.Event()
        self.service = TimerService(
            TimerStore(path),
            cfg or TimersConfig(),
            asyncio.get_running_loop(),
            wall=clock.wall,
            monotonic=clock.mono,
            on_ring=self._on_ring,
            on_change=self._on_change,
            check_interval_s=CHECK,
        )

    def _on_ring(self, timer: Timer) -> None:
        self.rang.append(timer)
        self.rang_event.set()

    def _on_change(self) -> None:
        self.changes += 1
        self.changed_event.set()

    async def next_ring(self) -> Timer:
        await asyncio.wait_for(self.rang_event.wait(), WAIT)
        self.rang_event.clear()
        return self.rang[-1]

    async def next_change(self) -> None:
        await asyncio.wait_for(self.changed_event.wait(), WAIT)
        self.changed_event.clear()

    async def restart(self) -> None:
        await self.service.flush()
        self.service.stop()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / TIMERS_FILE


def labels(service: TimerService) -> list[str]:
    return [t.label for t in service.list()]


# --------------------------------------------------------------------------- restarts


def test_timers_survive_a_daemon_restart(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        first = Harness(path, clock)
        first.service.start()
        first.service.add(300, "eggs", call_id="fc-1")
        first.service.add(600, "pasta")
        cancelled = first.service.add(60, "tea")
        first.service.cancel(cancelled.id)
        await first.restart()

        clock.advance(100)
        second = Harness(path, clock)
        second.service.start()
        rows = {t.label: t for t in second.service.list()}
        assert sorted(rows) == ["eggs", "pasta"]
        assert rows["eggs"].id == "t1" and rows["eggs"].call_id == "fc-1"
        assert round(second.service.remaining_s(rows["eggs"])) == 200
        assert round(second.service.remaining_s(rows["pasta"])) == 500
        # Ids are never reused, even for a timer that was cancelled before the restart.
        assert second.service.add(1000, "tea").id == "t4"

        clock.advance(200)
        assert (await second.next_ring()).label == "eggs"
        second.service.stop()

    asyncio.run(scenario())


def test_timer_that_ended_while_the_daemon_was_down_rings_at_start(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        first = Harness(path, clock)
        first.service.start()
        first.service.add(60, "eggs")
        await first.restart()

        clock.advance(90)  # ended 30 s ago, well within ring_max_s
        second = Harness(path, clock)
        second.service.start()
        assert (await second.next_ring()).label == "eggs"
        assert second.service.any_ringing
        assert [t.label for t in second.service.ringing()] == ["eggs"]
        assert second.service.describe()[0]["state"] == "ringing"
        second.service.stop()

    asyncio.run(scenario())


def test_timer_that_ended_long_before_the_restart_is_dropped_not_rung(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        cfg = TimersConfig(ring_max_s=600)
        first = Harness(path, clock, cfg)
        first.service.start()
        first.service.add(60, "eggs")
        first.service.add(3600, "roast")
        await first.restart()

        clock.advance(60 + 601)
        second = Harness(path, clock, cfg)
        second.service.start()
        await clock.checks(5)
        assert second.rang == []
        assert labels(second.service) == ["roast"]
        await second.service.flush()
        assert [t.label for t in TimerStore(path).load().timers] == ["roast"]
        second.service.stop()

    asyncio.run(scenario())


def test_a_timer_that_was_ringing_at_shutdown_rings_again_for_the_rest_of_its_time(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        cfg = TimersConfig(ring_max_s=60)
        first = Harness(path, clock, cfg)
        first.service.start()
        first.service.add(10, "eggs")
        clock.advance(10)
        await first.next_ring()
        clock.advance(20)
        await first.restart()

        clock.advance(5)  # it has rung for 25 of its 60 s
        second = Harness(path, clock, cfg)
        second.service.start()
        assert (await second.next_ring()).label == "eggs"
        clock.advance(30)
        await clock.checks(5)
        assert second.service.any_ringing
        clock.advance(6)
        await second.next_change()
        assert not second.service.any_ringing and second.service.list() == []
        second.service.stop()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- ringing


def test_timer_rings_once_when_it_ends(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        h.service.add(300, "eggs")
        clock.advance(299)
        await clock.checks(5)
        assert h.rang == [] and not h.service.any_ringing
        clock.advance(1)
        timer = await h.next_ring()
        assert timer.label == "eggs" and timer.state == "ringing"
        await clock.checks(10)
        assert len(h.rang) == 1, "on_ring is called once per timer, not on every check"
        h.service.stop()

    asyncio.run(scenario())


def test_ringing_stops_by_itself_after_ring_max_s(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock, TimersConfig(ring_max_s=60))
        h.service.start()
        h.service.add(10, "eggs")
        clock.advance(10)
        await h.next_ring()
        h.changed_event.clear()
        clock.advance(59)
        await clock.checks(5)
        assert h.service.any_ringing
        clock.advance(2)
        await h.next_change()
        assert not h.service.any_ringing
        assert h.service.list() == []
        await h.service.flush()
        assert TimerStore(path).load().timers == []
        h.service.stop()

    asyncio.run(scenario())


def test_stop_ringing_stops_only_the_ringing_timers(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        h.service.add(10, "eggs")
        h.service.add(600, "roast")
        clock.advance(10)
        await h.next_ring()
        stopped = h.service.stop_ringing()
        assert [t.label for t in stopped] == ["eggs"]
        assert not h.service.any_ringing
        assert labels(h.service) == ["roast"]
        assert h.service.stop_ringing() == []
        await h.service.flush()
        assert [t.label for t in TimerStore(path).load().timers] == ["roast"]
        h.service.stop()

    asyncio.run(scenario())


def test_cancelling_a_ringing_timer_stops_it(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        timer = h.service.add(10, "eggs")
        clock.advance(10)
        await h.next_ring()
        assert h.service.cancel(timer.id) is not None
        assert not h.service.any_ringing and h.service.ringing() == []
        assert h.service.cancel(timer.id) is None
        h.service.stop()

    asyncio.run(scenario())


def test_a_failing_callback_does_not_stop_other_timers(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        rang: list[str] = []
        second_rang = asyncio.Event()

        def on_ring(timer: Timer) -> None:
            rang.append(timer.label)
            if timer.label == "second":
                second_rang.set()
            raise RuntimeError("alarm hardware missing")

        service = TimerService(TimerStore(path), TimersConfig(), asyncio.get_running_loop(),
                               wall=clock.wall, monotonic=clock.mono, on_ring=on_ring, check_interval_s=CHECK)
        service.start()
        service.add(10, "first")
        service.add(20, "second")
        clock.advance(10)
        await clock.checks(5)
        clock.advance(10)
        await asyncio.wait_for(second_rang.wait(), WAIT)
        assert rang == ["first", "second"]
        assert len(service.ringing()) == 2
        service.stop()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- clock jumps


def test_wall_clock_jump_forward_rings_at_the_next_check(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        h.service.add(300, "eggs")
        await clock.checks(5)
        assert h.rang == []
        clock.jump_wall(310)  # NTP moved the clock past the deadline
        assert (await h.next_ring()).label == "eggs"
        h.service.stop()

    asyncio.run(scenario())


def test_wall_clock_jump_backward_neither_rings_early_nor_late(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        h.service.add(300, "eggs")
        clock.jump_wall(-3600)
        clock.advance(299)
        await clock.checks(5)
        assert h.rang == []
        assert round(h.service.remaining_s(h.service.list()[0])) == 1
        clock.advance(1)  # five minutes have really passed, whatever the wall clock says
        assert (await h.next_ring()).label == "eggs"
        h.service.stop()

    asyncio.run(scenario())


def test_boot_with_a_stale_clock_then_ntp_correction(path: Path) -> None:
    """Power off for two hours; the Pi boots with its old time, then NTP moves the clock forward."""

    async def scenario() -> None:
        clock = FakeClock()
        cfg = TimersConfig(ring_max_s=600)
        first = Harness(path, clock, cfg)
        first.service.start()
        first.service.add(600, "eggs")
        first.service.add(4 * 3600, "stock")
        first.service.add(2 * 3600 + 60, "bread")
        await first.restart()

        clock.mono_now = 10.0  # a fresh boot; the wall clock is where it was at shutdown
        second = Harness(path, clock, cfg)
        second.service.start()
        await clock.checks(5)
        assert second.rang == [] and len(second.service.list()) == 3

        clock.jump_wall(2 * 3600 + 120)  # NTP: the real time is two hours and two minutes later
        assert (await second.next_ring()).label == "bread"  # ended one minute ago
        await clock.checks(5)
        assert [t.label for t in second.rang] == ["bread"]  # eggs ended long ago: dropped, not rung
        assert labels(second.service) == ["bread", "stock"]
        stock = second.service.match("stock")[0]
        assert round(second.service.remaining_s(stock)) == 4 * 3600 - 2 * 3600 - 120
        second.service.stop()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the file


def test_file_is_written_atomically_with_mode_0600(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        for n in range(5):  # a burst of changes coalesces, and the last state wins
            h.service.add(60 + n, f"timer {n}")
        await h.service.flush()
        assert sorted(p.name for p in path.parent.iterdir()) == [TIMERS_FILE]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = json.loads(path.read_text())
        assert [t["label"] for t in data["timers"]] == [f"timer {n}" for n in range(5)]
        h.service.stop()

    asyncio.run(scenario())


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TimerStore(path)
    first = Timer(id="t1", label="eggs", duration_s=60, deadline=START + 60, created_at=START)
    from appliance.timers.store import StoredTimers

    store.save(StoredTimers([first], 2))
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("appliance.timers.store.os.fsync", broken_fsync)
    with pytest.raises(OSError):
        store.save(StoredTimers([], 2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [TIMERS_FILE]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"version": 1, "next_id": 3, "timers": {"id": "t1"}}', b"\xff\xfe", b"[]"],
    ids=["not-json", "timers-not-a-list", "not-utf8", "wrong-shape"],
)
def test_a_corrupt_file_means_no_timers_and_is_kept_for_the_owner(
    path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    async def scenario() -> None:
        clock = FakeClock()
        h = Harness(path, clock)
        h.service.start()
        assert h.service.list() == []
        assert path.with_name(TIMERS_FILE + ".corrupt").read_bytes() == content
        assert h.service.add(60, "eggs").id == "t1"
        await h.service.flush()
        assert [t.label for t in TimerStore(path).load().timers] == ["eggs"]
        h.service.stop()

    asyncio.run(scenario())
    assert any("starting with no timers" in r.getMessage() for r in caplog.records)


def test_an_unwritable_state_dir_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    async def scenario() -> None:
        h = Harness(blocker / TIMERS_FILE, FakeClock())
        h.service.start()
        h.service.add(60, "eggs")
        await h.service.flush()
        assert labels(h.service) == ["eggs"]  # the timer still runs; only remembering it failed
        h.service.stop()

    asyncio.run(scenario())
    assert any("cannot save the timers" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- limits and labels


def test_max_timers_is_enforced_with_a_clear_error(path: Path) -> None:
    async def scenario() -> None:
        h = Harness(path, FakeClock(), TimersConfig(max_timers=2))
        h.service.start()
        first = h.service.add(60, "a")
        h.service.add(60, "b")
        with pytest.raises(TimerError) as info:
            h.service.add(60, "c")
        assert info.value.code == "too_many_timers"
        assert "cancel one" in info.value.message
        h.service.cancel(first.id)
        assert h.service.add(60, "c").label == "c"
        h.service.stop()

    asyncio.run(scenario())


def test_more_stored_timers_than_allowed_keeps_the_soonest(path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        first = Harness(path, clock, TimersConfig(max_timers=5))
        first.service.start()
        for seconds in (500, 100, 400, 200, 300):
            first.service.add(seconds, f"{seconds}")
        await first.restart()
        second = Harness(path, clock, TimersConfig(max_timers=3))
        second.service.start()
        assert labels(second.service) == ["100", "200", "300"]
        second.service.stop()

    asyncio.run(scenario())


def test_duration_limits(path: Path) -> None:
    async def scenario() -> None:
        h = Harness(path, FakeClock(), TimersConfig(max_duration_h=1))
        h.service.start()
        for bad in (0, -5, 3601):
            with pytest.raises(TimerError) as info:
                h.service.add(bad, "x")
            assert info.value.code == "bad_duration"
        assert h.service.add(3600, "x").duration_s == 3600
        h.service.stop()

    asyncio.run(scenario())


def test_duplicate_labels_get_a_number_and_match_ignores_case(path: Path) -> None:
    async def scenario() -> None:
        h = Harness(path, FakeClock())
        h.service.start()
        assert h.service.add(60, "eggs").label == "eggs"
        assert h.service.add(70, "Eggs").label == "Eggs 2"
        assert h.service.add(80, "  eggs  ").label == "eggs 3"
        assert h.service.add(90, None).label == "timer"
        assert h.service.add(95, "").label == "timer 2"
        assert [t.label for t in h.service.match("EGGS 2")] == ["Eggs 2"]
        assert [t.id for t in h.service.match("t1")] == ["t1"]
        assert h.service.match("T1") == []  # ids match exactly
        h.service.stop()

    asyncio.run(scenario())


def test_undo_by_call_id_removes_only_that_calls_timer(path: Path) -> None:
    async def scenario() -> None:
        h = Harness(path, FakeClock())
        h.service.start()
        h.service.add(60, "eggs", call_id="fc-1")
        h.service.add(60, "pasta", call_id="fc-2")
        assert [t.label for t in h.service.cancel_by_call("fc-1")] == ["eggs"]
        assert h.service.cancel_by_call("fc-1") == []
        assert labels(h.service) == ["pasta"]
        h.service.stop()

    asyncio.run(scenario())

