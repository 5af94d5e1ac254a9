"""What the Live API emulator answers, and which faults it injects.

A Scenario is plain data so tests can build one directly; ``Scenario.parse`` reads the compact
``--scenario`` strings of the CLI (several of them combine, each adds or overrides one thing).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from appliance.emulator.arguments import SCENARIO_HELP

__all__ = ["OUTPUT_RATE", "Scenario", "ScenarioError", "tone_pcm"]

OUTPUT_RATE = 24000
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

class ScenarioError(ValueError):
    """A --scenario spec that cannot be understood; the message is one line saying what to write instead."""


@dataclass
class Scenario:
    """Reply content and fault injection for the emulator.

    Faults (drop/drop-mid-reply/close/reject/malformed/unknown/slow) apply only to the first
    ``fault_connections`` connections made after the scenario was set (all connections when None), so
    that a client can recover, e.g. resume after a dropped socket.

    Tool scheduling follows the client's declaration, as on the service: ``behavior`` BLOCKING makes the
    model wait for the toolResponse before it speaks; NON_BLOCKING lets it keep talking, end that part
    with turnComplete + interactionStatus IN_PROGRESS, and speak again (ending IDLE) once every call is
    answered. A declaration without ``behavior`` gets the model's default (NON_BLOCKING on 3.8, BLOCKING
    elsewhere), or NON_BLOCKING everywhere but 3.1 when ``non_blocking_tools`` is set.
    """

    #: echo the user's audio, a tone, or "silent": take the turn and never answer (a stalled service)
    reply: Literal["echo", "tone", "silent"] = "echo"
    tone_seconds: float = 1.0
    tone_hz: float = 440.0
    transcript: str | None = None  # input transcription text; default describes the audio length
    reply_text: str | None = None  # output transcription text; default describes the reply
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    urlsafe_b64: bool = False
    #: after the tool responses arrive, cancel those calls (the client must undo their effects)
    cancel_tool_calls: bool = False
    #: declarations that leave ``behavior`` out are scheduled NON_BLOCKING (3.8's default) on every model
    non_blocking_tools: bool = False
    #: every turnComplete carries interactionStatus (IDLE when done); NON_BLOCKING tool turns always do
    interaction_status: bool = False
    #: barge-in ends the cut reply with ``interrupted`` only, no turnComplete (else interrupted -> turnComplete)
    barge_in_turn_complete: bool = True
    # Faults
    drop_after: int | None = None  # abort TCP (no close frame) after this many server messages
    #: abort TCP once this fraction (0..1) of the first reply's audio has been sent
    drop_mid_reply: float | None = None
    close_after: int | None = None  # close with close_code/close_reason after this many server messages
    close_after_setup: bool = False  # close with close_code/close_reason right after setupComplete
    close_code: int = 1011
    close_reason: str = "Internal error encountered."
    reject_setup: tuple[int, str] | None = None  # close with this instead of setupComplete
    malformed_before_reply: bool = False  # one truncated JSON frame before the first reply of a connection
    unknown_message_before_reply: bool = False  # one message with an unknown top-level key before it
    setup_delay_s: float = 0.0
    fault_connections: int | None = None

    def __post_init__(self) -> None:
        if self.reply not in ("echo", "tone", "silent"):
            raise ScenarioError(f"reply must be 'echo', 'tone' or 'silent', got {self.reply!r}")
        if not (self.tone_seconds > 0 and math.isfinite(self.tone_seconds)):
            raise ScenarioError(f"tone_seconds must be a positive number, got {self.tone_seconds!r}")
        self.tool_calls = [(str(name), dict(args)) for name, args in self.tool_calls]
        if self.drop_mid_reply is not None and not 0.0 <= self.drop_mid_reply <= 1.0:
            raise ScenarioError(f"drop_mid_reply must be a fraction from 0 to 1, got {self.drop_mid_reply!r}")
        for code in [self.close_code] + ([self.reject_setup[0]] if self.reject_setup else []):
            _check_close_code(code)

    def copy(self) -> Scenario:
        """A deep copy, so a running connection is not affected when a test edits the scenario."""
        return copy.deepcopy(self)

    def faults_apply(self, connection_index: int) -> bool:
        """True if faults apply to the connection_index-th (0-based) connection since the scenario was set."""
        return self.fault_connections is None or connection_index < self.fault_connections

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> Scenario:
        scenario = cls()
        for spec in specs:
            scenario = cls.parse(spec, base=scenario)
        return scenario

    @classmethod
    def parse(cls, spec: str, base: Scenario | None = None) -> Scenario:
        """Apply one CLI spec to ``base`` (default: a fresh Scenario) and return the result."""
        current = (base or cls()).copy()
        head, _, rest = spec.strip().partition(":")
        head = head.strip().lower()
        try:
            return _apply(current, head, rest, spec)
        except ScenarioError:
            raise
        except (ValueError, TypeError) as exc:
            raise ScenarioError(f"bad --scenario {spec!r}: {exc}") from None


def _check_close_code(code: int) -> None:
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ScenarioError(f"close code {code} cannot be sent in a close frame; use e.g. 1007, 1008 or 1011")


def _number(text: str, what: str, spec: str, *, whole: bool = False) -> float:
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ScenarioError(f"bad --scenario {spec!r}: {what} must be {kind}, got {text!r}") from None
    if value < 0 or not math.isfinite(value):
        raise ScenarioError(f"bad --scenario {spec!r}: {what} must not be negative")
    return value


def _code_and_reason(rest: str, spec: str, default_reason: str) -> tuple[int, str]:
    code_text, _, reason = rest.partition(":")
    code = int(_number(code_text, "the close code", spec, whole=True))
    _check_close_code(code)
    return code, reason or default_reason


def _apply(s: Scenario, head: str, rest: str, spec: str) -> Scenario:
    if head == "echo" and not rest:
        return replace(s, reply="echo")
    if head == "silent" and not rest:
        return replace(s, reply="silent")
    if head == "tone":
        seconds = _number(rest, "the tone length in seconds", spec) if rest else s.tone_seconds
        if seconds <= 0:
            raise ScenarioError(f"bad --scenario {spec!r}: the tone length must be above 0 seconds")
        return replace(s, reply="tone", tone_seconds=seconds)
    if head in ("tool", "nonblocking-tool"):
        name, _, args_text = rest.partition(":")
        if not name:
            raise ScenarioError(f"bad --scenario {spec!r}: write {head}:NAME or {head}:NAME:{{\"arg\": 1}}")
        try:
            args = json.loads(args_text) if args_text else {}
        except json.JSONDecodeError:
            raise ScenarioError(f"bad --scenario {spec!r}: the tool arguments must be a JSON object") from None
        if not isinstance(args, dict):
            raise ScenarioError(f"bad --scenario {spec!r}: the tool arguments must be a JSON object")
        non_blocking = s.non_blocking_tools or head == "nonblocking-tool"
        return replace(s, tool_calls=[*s.tool_calls, (name, args)], non_blocking_tools=non_blocking)
    if head == "interaction-status" and not rest:
        return replace(s, interaction_status=True)
    if head == "barge-no-complete" and not rest:
        return replace(s, barge_in_turn_complete=False)
    if head == "drop-mid-reply":
        fraction = _number(rest, "the drop-mid-reply fraction", spec)
        if fraction > 1:
            raise ScenarioError(f"bad --scenario {spec!r}: the fraction must be from 0 to 1, e.g. drop-mid-reply:0.4")
        return replace(s, drop_mid_reply=fraction)
    if head == "transcript" and rest:
        return replace(s, transcript=rest)
    if head == "reply-text" and rest:
        return replace(s, reply_text=rest)
    if head == "cancel-tools" and not rest:
        return replace(s, cancel_tool_calls=True)
    if head == "urlsafe-b64" and not rest:
        return replace(s, urlsafe_b64=True)
    if head == "drop-after":
        return replace(s, drop_after=int(_number(rest, "drop-after", spec, whole=True)))
    if head == "close" and rest:
        code, reason = _code_and_reason(rest, spec, s.close_reason)
        return replace(s, close_after_setup=True, close_code=code, close_reason=reason)
    if head == "close-after":
        count, _, code_reason = rest.partition(":")
        code, reason = _code_and_reason(code_reason, spec, s.close_reason)
        return replace(s, close_after=int(_number(count, "close-after", spec, whole=True)),
                       close_code=code, close_reason=reason)
    if head == "reject-setup" and rest:
        return replace(s, reject_setup=_code_and_reason(rest, spec, "Request contains an invalid argument."))
    if head == "malformed" and not rest:
        return replace(s, malformed_before_reply=True)
    if head == "unknown-message" and not rest:
        return replace(s, unknown_message_before_reply=True)
    if head == "slow-setup":
        return replace(s, setup_delay_s=_number(rest, "slow-setup seconds", spec))
    if head == "fault-connections":
        return replace(s, fault_connections=int(_number(rest, "fault-connections", spec, whole=True)))
    raise ScenarioError(f"bad --scenario {spec!r}: expected one of {SCENARIO_HELP}")


def tone_pcm(seconds: float, hz: float = 440.0, rate: int = OUTPUT_RATE, fade_ms: float = 10.0) -> bytes:
    """A sine tone as s16le mono PCM, with short linear fades so playback does not click."""
    n = max(1, round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    wave = 0.3 * np.sin(2.0 * np.pi * hz * t)
    fade = min(n // 2, max(1, round(rate * fade_ms / 1000.0)))
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    wave[:fade] *= ramp
    wave[n - fade:] *= ramp[::-1]
    return np.round(wave * 32767.0).astype("<i2").tobytes()
