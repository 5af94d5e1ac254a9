"""Retry delays for reconnecting to the Live API.

Two schedules: transient failures (drops, 1011, timeouts) come back fast with full
jitter, so a kitchen full of appliances after a router reboot does not reconnect in
lockstep; configuration failures (bad key, unknown model) retry slowly, because only
the owner can fix them and a tight loop would only burn quota.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempt: int = 0

    def next_delay(self) -> float:
        """Full jitter: uniform in [ceiling/2, ceiling], ceiling growing per attempt."""
        ceiling = min(self.cap_s, self.base_s * self.factor**self.attempt)
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def transient_backoff() -> Backoff:
    return Backoff(base_s=0.5, cap_s=30.0)


def config_error_backoff() -> Backoff:
    """Slow: 30 s, 60 s, 120 s ... capped at 10 minutes."""
    return Backoff(base_s=30.0, cap_s=600.0)


def quota_backoff() -> Backoff:
    return Backoff(base_s=60.0, cap_s=900.0)
