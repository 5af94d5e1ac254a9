"""How long the appliance waits before reconnecting, by what ended the last connection."""

from __future__ import annotations

import random

from appliance.live.backoff import Backoff
from appliance.live.link import HELD_RETRY_MAX_S, CloseKind, Retry


def _retry() -> Retry:
    return Retry(
        transient=Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(1)),
        config_errors=Backoff(base_s=30.0, cap_s=600.0, rng=random.Random(2)),
    )


def test_drops_back_off_towards_the_cap_when_no_one_is_waiting() -> None:
    retry = _retry()
    delays = [retry.delay_after(CloseKind.TRANSIENT, held=False) for _ in range(10)]
    assert delays[0] <= 0.5
    assert max(delays) > 10.0


def test_a_held_question_is_retried_every_few_seconds_however_long_the_outage() -> None:
    retry = _retry()
    delays = [retry.delay_after(CloseKind.TRANSIENT, held=True) for _ in range(10)]
    assert max(delays) <= HELD_RETRY_MAX_S


def test_a_planned_handover_reconnects_at_once_and_starts_the_backoff_over() -> None:
    retry = _retry()
    for _ in range(8):
        retry.delay_after(CloseKind.TRANSIENT, held=False)
    assert retry.delay_after(CloseKind.RESUME, held=False) == 0.0
    assert retry.delay_after(CloseKind.TRANSIENT, held=False) <= 0.5
    assert retry.delay_after(CloseKind.BAD_HANDLE, held=False) == 0.0


def test_a_refused_configuration_retries_slowly_and_quota_slower() -> None:
    retry = _retry()
    assert retry.delay_after(CloseKind.CONFIG, held=True) >= 15.0
    assert retry.delay_after(CloseKind.QUOTA, held=True) >= 30.0


def test_a_press_or_a_good_session_starts_every_schedule_over() -> None:
    retry = _retry()
    for _ in range(8):
        retry.delay_after(CloseKind.TRANSIENT, held=False)
    retry.skip_wait()
    assert retry.delay_after(CloseKind.TRANSIENT, held=False) <= 0.5
    for _ in range(4):
        retry.delay_after(CloseKind.CONFIG, held=False)
    retry.connected()
    assert retry.delay_after(CloseKind.CONFIG, held=False) <= 30.0
