"""Waiting in tests for a condition that has no event of its own (a file growing, a counter moving).

Polls with a deadline; a condition with an event should wait on the event instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0, *, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll_s)
