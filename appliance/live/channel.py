"""One ordered channel for control messages and data, where only data may be lost.

Turn signals (activityStart/End, a turn's end, a link change) and the audio or
events between them must stay in order, but they deserve different overflow
policies: a control item is never dropped, while data is bounded.  Control items
come a few per turn, so their count is bounded by what the appliance does, not by
the network; data is bounded by `data_limit` with the policy the owner picks:

* ``"drop-newest"``: `put_data_nowait` refuses new data while full (the microphone:
  a link that does not keep up loses the newest audio, never a turn signal);
* backpressure: `put_data` waits for room (the session's reader: a slow owner
  slows the socket, which TCP then pushes back on).

Everything runs on one asyncio loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedChannel(Generic[T]):
    """See the module docstring."""

    def __init__(self, data_limit: int) -> None:
        if data_limit < 1:
            raise ValueError("data_limit must be at least 1")
        self.data_limit = data_limit
        self._items: deque[tuple[bool, T]] = deque()
        self._data = 0
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        #: data items refused by put_data_nowait since the channel was made
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def data_count(self) -> int:
        return self._data

    def put_control(self, item: T) -> None:
        """Never blocks, never drops."""
        self._items.append((True, item))
        self._readable.set()

    def put_data_nowait(self, item: T) -> bool:
        """False (and the item is dropped) when the data bound is reached."""
        if self._data >= self.data_limit:
            self.dropped += 1
            return False
        self._push_data(item)
        return True

    async def put_data(self, item: T) -> None:
        """Wait for room, then add the item."""
        while self._data >= self.data_limit:
            self._room.clear()
            await self._room.wait()
        self._push_data(item)

    def _push_data(self, item: T) -> None:
        self._items.append((False, item))
        self._data += 1
        if self._data >= self.data_limit:
            self._room.clear()
        self._readable.set()

    def get_nowait(self) -> T:
        """The oldest item; IndexError when empty."""
        control, item = self._items.popleft()
        if not control:
            self._data -= 1
            self._room.set()
        if not self._items:
            self._readable.clear()
        return item

    def peek_is_data(self) -> bool | None:
        """Whether the next item is data (None when empty), for batching."""
        if not self._items:
            return None
        return not self._items[0][0]

    async def get(self) -> T:
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        return self.get_nowait()

    def clear_data(self) -> int:
        """Drop every queued data item, keep control items in order; returns how many."""
        kept = deque(entry for entry in self._items if entry[0])
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._data = 0
        self._room.set()
        if not self._items:
            self._readable.clear()
        return dropped
