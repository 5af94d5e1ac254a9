"""Session resumption: the handles the emulator issues and the conversations they point to.

A conversation outlives its connections: a client that reconnects with a handle finds its turn count
again, as on the service. Only the newest ``max_handles`` handles are kept.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Conversation", "Conversations"]


class AttachedConnection(Protocol):
    """The one thing a conversation needs to know of the connection it is attached to."""

    @property
    def is_open(self) -> bool: ...


@dataclass
class Conversation:
    """What a resumption handle points to: the turn count survives reconnects."""

    id: int
    model: str
    turns: int = 0
    handler: AttachedConnection | None = None  # the connection currently attached, if any


class Conversations:
    """Every conversation a handle still points to, by handle; the oldest handles are forgotten first."""

    def __init__(self, max_handles: int) -> None:
        self._max_handles = max_handles
        self._ids = itertools.count(1)
        self._handles: OrderedDict[str, Conversation] = OrderedDict()

    def new(self, model: str) -> Conversation:
        return Conversation(next(self._ids), model)

    def find(self, handle: str) -> Conversation | None:
        return self._handles.get(handle)

    def issue_handle(self, conversation: Conversation) -> str:
        handle = secrets.token_urlsafe(24)
        self._handles[handle] = conversation
        while len(self._handles) > self._max_handles:
            self._handles.popitem(last=False)
        return handle
