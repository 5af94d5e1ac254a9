"""The emulator's settings: where it listens, which models it serves, how fast it replies, what it keeps.

Plain data apart from the server, so every part of a connection can read the same settings without
depending on the server that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.emulator.model_rules import DEFAULT_MODEL_RULES, ModelRules

__all__ = ["DEFAULT_MODELS", "EmulatorConfig"]

DEFAULT_MODELS = frozenset(DEFAULT_MODEL_RULES)


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    models: frozenset[str] = DEFAULT_MODELS
    model_rules: dict[str, ModelRules] = field(default_factory=lambda: dict(DEFAULT_MODEL_RULES))
    rejected_keys: frozenset[str] = field(default=frozenset(), repr=False)
    connection_lifetime_s: float | None = 600.0
    goaway_grace_s: float = 50.0
    pace: float = 1.7  # reply speed relative to real time; 0 = as fast as possible
    chunk_ms: int = 40  # reply audio per serverContent message
    log_path: str | None = None  # JSON lines of what was received (audio data replaced by byte counts)
    max_received: int = 10_000
    max_turns: int = 1_000
    max_connections: int = 1_000
    max_handles: int = 10_000
    max_activity_seconds: float = 300.0
    max_queued_replies: int = 4
    close_timeout_s: float = 10.0
