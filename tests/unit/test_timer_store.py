"""The timers file always loads again: labels are made storable, unstorable state is never written,
and a file with some bad entries keeps the good ones."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from appliance.settings.schema import TimersConfig
from appliance.timers.model import MAX_LABEL_CHARS, Timer, normalise_label
from appliance.timers.service import TimerService
from appliance.timers.store import TIMERS_FILE, StoredTimers, TimerStore

START = 1_800_000_000.0


def service_for(path: Path) -> TimerService:
    return TimerService(
        TimerStore(path), TimersConfig(), asyncio.get_running_loop(),
        wall=lambda: START, monotonic=lambda: 100.0, on_ring=lambda _timer: None, check_interval_s=60,
    )


def strict_utf8_json(path: Path) -> dict:
    """What a reader that accepts only valid UTF-8 JSON sees."""
    return json.loads(path.read_bytes().decode("utf-8", errors="strict"))


def timer(n: int, label: str = "eggs") -> Timer:
    return Timer(id=f"t{n}", label=label, duration_s=60, deadline=START + 60, created_at=START)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / TIMERS_FILE


def test_a_label_with_a_lone_surrogate_is_stored_and_shown_safely(path: Path) -> None:
    async def scenario() -> list[dict]:
        service = service_for(path)
        service.start()
        service.add(60, "\ud800x", call_id="call-\udc00")
        await service.flush()
        rows = service.describe()
        service.stop()
        return rows

    rows = asyncio.run(scenario())
    data = strict_utf8_json(path)
    assert [t["label"] for t in data["timers"]] == ["\ufffdx"]
    assert data["timers"][0]["call_id"] == "call-\ufffd"
    # what `ctl status` / `ctl timers` send: it must encode as strict UTF-8
    json.dumps(rows, ensure_ascii=False).encode("utf-8")
    assert rows[0]["label"] == "\ufffdx"


def test_cancelling_by_a_call_id_with_a_surrogate_still_finds_the_timer(path: Path) -> None:
    async def scenario() -> list[str]:
        service = service_for(path)
        service.start()
        service.add(60, "rice", call_id="c\ud800")
        removed = service.cancel_by_call("c\ud800")
        service.stop()
        return [t.label for t in removed]

    assert asyncio.run(scenario()) == ["rice"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tea\x00\x07 time", "tea time"),
        ("\u202eevil\u202c label", "evil label"),
        ("pasta\r\nsauce", "pasta sauce"),
        ("\x00\x01", "timer"),
        ("x" * 10_000, "x" * MAX_LABEL_CHARS),
        (None, "timer"),
        (42, "timer"),
    ],
    ids=["control chars", "bidi override", "newline", "only controls", "very long", "none", "not text"],
)
def test_labels_are_one_short_line_of_plain_text(raw: object, expected: str) -> None:
    assert normalise_label(raw) == expected


def test_state_that_cannot_be_encoded_keeps_the_previous_file(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TimerStore(path)
    assert store.save(StoredTimers([timer(1)], 2)) is True
    before = path.read_bytes()

    with caplog.at_level(logging.ERROR, logger="appliance.timers.store"):
        written = store.save(StoredTimers([timer(1), timer(2, "\ud800")], 3))

    assert written is False
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [TIMERS_FILE]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "keeps the previous state" in errors[0] and "\n" not in errors[0]


def test_a_non_finite_deadline_is_never_written(path: Path) -> None:
    store = TimerStore(path)
    store.save(StoredTimers([timer(1)], 2))
    broken = Timer(id="t2", label="x", duration_s=60, deadline=float("nan"), created_at=START)
    assert store.save(StoredTimers([broken], 3)) is False
    assert [t["id"] for t in strict_utf8_json(path)["timers"]] == ["t1"]


def test_a_file_with_bad_entries_keeps_the_good_ones(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path.parent.mkdir(parents=True)
    good = {"id": "t1", "label": "eggs", "duration_s": 60, "deadline": START + 60, "created_at": START}
    content = json.dumps({
        "version": 1,
        "next_id": 9,
        "timers": [
            {"id": "t2"},                                   # fields missing
            good,
            {**good, "id": "t3", "duration_s": "soon"},     # wrong type
            {**good, "label": "again"},                     # a second t1
            "not an object",
            {**good, "id": "t" + "9" * 5000},               # an id no one could have been given
        ],
    }).encode()
    path.write_bytes(content)

    with caplog.at_level(logging.ERROR, logger="appliance.timers.store"):
        stored = TimerStore(path).load()

    assert [(t.id, t.label) for t in stored.timers] == [("t1", "eggs")]
    assert stored.next_id == 9
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "skipped 5 bad entries" in errors[0] and "loaded 1 timer" in errors[0]
    assert path.with_name(TIMERS_FILE + ".corrupt").read_bytes() == content  # nothing is lost


def test_a_file_from_an_older_version_with_an_escaped_surrogate_loads_clean(path: Path) -> None:
    path.parent.mkdir(parents=True)
    # json.dumps' default ensure_ascii=True wrote lone surrogates as \ud800 escapes
    path.write_text(json.dumps({
        "version": 1, "next_id": 2,
        "timers": [{"id": "t1", "label": "\ud800x", "duration_s": 60, "deadline": START + 60, "created_at": START}],
    }))

    async def scenario() -> list[dict]:
        service = service_for(path)
        service.start()
        rows = service.describe()
        service.add(30, "tea")
        await service.flush()
        service.stop()
        return rows

    rows = asyncio.run(scenario())
    json.dumps(rows, ensure_ascii=False).encode("utf-8")
    assert rows[0]["label"] == "\ufffdx"
    assert [t["label"] for t in strict_utf8_json(path)["timers"]] == ["\ufffdx", "tea"]


def test_an_oversized_state_file_is_set_aside(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    with caplog.at_level(logging.ERROR, logger="appliance.timers.store"):
        stored = TimerStore(path).load()
    assert stored.timers == []
    assert path.with_name(TIMERS_FILE + ".corrupt").exists() and not path.exists()
    assert any("is larger than 1 MiB" in r.getMessage() for r in caplog.records)


def test_deeply_nested_json_is_set_aside_not_a_crash(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "next_id": 1, "timers": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert TimerStore(path).load().timers == []
    assert path.with_name(TIMERS_FILE + ".corrupt").exists()
