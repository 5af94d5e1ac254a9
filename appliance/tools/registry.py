"""Function tools for the model: declarations, argument checking, answers and undo.

A tool is one small module exporting a `Tool`; `catalog.ALL_TOOLS` lists them.  The registry turns a
`toolCall` into one `FunctionResponse` per call, always with the call's id and name and always at
once: the tools are synchronous and fast (no network, the timer file is written off the loop).
Nothing a model sends can crash it: unknown names, bad arguments and failing tools all become an
`{"error": {"code", "message", "retryable"}}` answer that says what to do differently, because a
vague failure makes the model call again and again.  A successful answer is `{"output": {...}}`.

Arguments are checked against the tool's own declaration before the tool runs (required, no
unknown names, types), so a tool module only checks ranges and meanings.  Whole numbers may arrive
as 300, 300.0 or "300" (models are loose with JSON types); 2.5, "abc", NaN and booleans are refused.

`cancel(ids)` undoes what the named calls did (a `toolCallCancellation`), for the last
`MAX_REMEMBERED_CALLS` successful calls.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any

from appliance.live.messages import FunctionResponse, ToolCall

if TYPE_CHECKING:
    from appliance.settings.schema import Config
    from appliance.timers.service import TimerService

__all__ = [
    "MAX_REMEMBERED_CALLS",
    "BadArguments",
    "CallRecord",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "error_payload",
    "resolve_time_zone",
]

log = logging.getLogger(__name__)

MAX_REMEMBERED_CALLS = 100
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_MAX_MESSAGE_CHARS = 300


class ToolError(Exception):
    """A call that cannot be done; becomes an error answer, not a crash."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details


class BadArguments(ToolError):
    """Arguments of the wrong type or out of range: the message says which and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_arguments", message, retryable=False)


@dataclass(frozen=True)
class CallRecord:
    """A successful call, kept so that a cancellation can undo it."""

    id: str
    name: str
    args: Mapping[str, Any]
    result: Mapping[str, Any]


@dataclass
class ToolContext:
    """What the tools may touch; the daemon builds one, tests build one with fakes.

    `time_zone` None means the system's local zone.  `now` must return an aware datetime.
    `log_args` allows argument values (timer labels are words the user said) in the log.
    """

    timers: TimerService | None = None
    get_volume: Callable[[], int] | None = None
    set_volume: Callable[[int], None] | None = None
    time_zone: tzinfo | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    log_args: bool = False
    #: the id of the call being run (the registry sets it per call), e.g. to tag a timer for undo
    call_id: str | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        timers: TimerService | None,
        get_volume: Callable[[], int] | None,
        set_volume: Callable[[int], None] | None,
    ) -> ToolContext:
        return cls(
            timers=timers,
            get_volume=get_volume,
            set_volume=set_volume,
            time_zone=resolve_time_zone(cfg.tools.time_zone),
            log_args=cfg.privacy.log_transcripts,
        )

    def local(self, moment: datetime | float | None = None) -> datetime:
        """`moment` (an aware datetime or epoch seconds; default now) in the configured zone."""
        if moment is None:
            moment = self.now()
        elif not isinstance(moment, datetime):
            moment = datetime.fromtimestamp(moment, timezone.utc)
        return moment.astimezone(self.time_zone) if self.time_zone is not None else moment.astimezone()

    def clock(self, moment: datetime | float | None = None) -> str:
        """Local wall time as "14:05:10"."""
        return self.local(moment).strftime("%H:%M:%S")

    def day(self, moment: datetime | float | None = None, *, year: bool = True) -> str:
        """Local date as "Sunday 22 November 2026" (English whatever the system locale: the model reads it)."""
        local = self.local(moment)
        text = f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"
        return f"{text} {local.year}" if year else text

    def require_timers(self) -> TimerService:
        if self.timers is None:
            raise ToolError("unavailable", "timers are not available on this device right now")
        return self.timers


def resolve_time_zone(name: str) -> tzinfo | None:
    """The zone for an IANA name; empty (or unknown, which is logged) means the system's."""
    if not name:
        return None
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (ImportError, ValueError, KeyError, OSError):
        log.warning("unknown time zone %r; using the system's local time", name)
        return None


@dataclass(frozen=True)
class Tool:
    """One function the model may call.

    `parameters` is the declaration's schema (types in upper case: OBJECT, INTEGER, NUMBER, STRING,
    BOOLEAN), or None for a tool without arguments: the declaration then has no `parameters` at
    all, because the API rejects an OBJECT with empty `properties`.  The registry checks arguments
    against it before `run`.  `run(args, ctx)` returns the
    result object or raises ToolError.  `undo(record, ctx)` reverses a successful call and says what
    it did (None: nothing left to undo).
    """

    name: str
    description: str
    parameters: Mapping[str, Any] | None
    run: Callable[[dict[str, Any], ToolContext], dict[str, Any]]
    undo: Callable[[CallRecord, ToolContext], str | None] | None = None

    def declaration(self) -> dict[str, Any]:
        declaration: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.parameters is not None:
            declaration["parameters"] = _plain(self.parameters)
        return declaration


def error_payload(code: str, message: str, *, retryable: bool = False, **details: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": _one_line(message), "retryable": retryable}
    error.update(details)
    return {"error": error}


class ToolRegistry:
    """The enabled tools, answering tool calls and undoing cancelled ones."""

    def __init__(self, tools: Sequence[Tool], ctx: ToolContext) -> None:
        self.ctx = ctx
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        self._records: OrderedDict[str, CallRecord] = OrderedDict()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def declarations(self) -> tuple[dict[str, Any], ...]:
        """For `SessionSettings.functions` (the setup builder adds `behavior` per model)."""
        return tuple(tool.declaration() for tool in self._tools.values())

    def handle(self, call: ToolCall) -> list[FunctionResponse]:
        """Answer every call that has an id; calls without one cannot be answered and are skipped."""
        responses = []
        for fc in call.calls:
            if not fc.id:
                log.warning("tool call %r has no id; it cannot be answered, so it is not run", fc.name)
                continue
            problem = getattr(fc, "problem", None)
            if problem:
                log.warning("tool call %s (%s) not run: %s", fc.id, fc.name, problem)
                response = {"error": f"the call's arguments could not be read: {problem}"}
            else:
                response = self._run(fc.id, fc.name, fc.args)
            responses.append(FunctionResponse(id=fc.id, name=fc.name, response=response))
        return responses

    def cancel(self, ids: Sequence[str]) -> list[str]:
        """Undo the effects of the named calls where possible; returns what was undone."""
        done = []
        for call_id in ids:
            record = self._records.pop(call_id, None)
            if record is None:
                continue
            tool = self._tools.get(record.name)
            if tool is None or tool.undo is None:
                continue
            try:
                what = tool.undo(record, self.ctx)
            except Exception:
                log.exception("undoing tool call %s (%s) failed", call_id, record.name)
                continue
            if what:
                done.append(what)
                log.info("tool call %s (%s) cancelled: %s", call_id, record.name,
                         what if self.ctx.log_args else "undone")
        return done

    # ------------------------------------------------------------------ internals

    def _run(self, call_id: str, name: str, raw_args: Mapping[str, Any]) -> dict[str, Any]:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            log.warning("tool call %s names an unknown function", call_id)
            return error_payload("unknown_function", f"there is no function {name!r}; available: {known}")
        shown = f"{name}({_show_args(raw_args)})" if self.ctx.log_args else name
        try:
            args = check_arguments(tool.parameters, raw_args)
            result = tool.run(args, dataclasses.replace(self.ctx, call_id=call_id))
        except ToolError as exc:
            log.info("tool %s [%s] -> %s: %s", shown, call_id, exc.code,
                     exc.message if self.ctx.log_args else "(details hidden)")
            return error_payload(exc.code, exc.message, retryable=exc.retryable, **exc.details)
        except Exception as exc:
            log.exception("tool %s [%s] failed", name, call_id)
            return error_payload(
                "internal_error", f"{name} failed on the device: {type(exc).__name__}: {exc}", retryable=False
            )
        self._remember(CallRecord(call_id, name, args, result))
        log.info("tool %s [%s] -> %s", shown, call_id, result.get("status", "ok"))
        return {"output": result}

    def _remember(self, record: CallRecord) -> None:
        self._records.pop(record.id, None)
        self._records[record.id] = record
        while len(self._records) > MAX_REMEMBERED_CALLS:
            self._records.popitem(last=False)


# --------------------------------------------------------------------------- argument checking


_KIND_WORDS = {
    "INTEGER": "a whole number",
    "NUMBER": "a number",
    "STRING": "a string",
    "BOOLEAN": "true or false",
}


def check_arguments(schema: Mapping[str, Any] | None, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments converted to their declared types, or BadArguments naming the problem.

    A null value counts as absent (models send null for optional arguments they skip).
    """
    if not isinstance(raw, Mapping):
        raise BadArguments("arguments must be an object")
    schema = schema or {}
    properties: Mapping[str, Any] = schema.get("properties", {})
    unknown = [key for key in raw if key not in properties]
    if unknown:
        allowed = f"allowed: {', '.join(properties)}" if properties else "this function takes no arguments"
        raise BadArguments(f"unknown argument {', '.join(map(repr, unknown))}; {allowed}")
    args: dict[str, Any] = {}
    for key, prop in properties.items():
        value = raw.get(key)
        if value is None:
            continue
        args[key] = _convert(key, prop.get("type", "STRING"), value)
    missing = [key for key in schema.get("required", ()) if key not in args]
    if missing:
        raise BadArguments(f"missing required argument {', '.join(map(repr, missing))}")
    return args


def _convert(key: str, kind: str, value: Any) -> Any:
    wrong = BadArguments(f"{key!r} must be {_KIND_WORDS.get(kind, kind.lower())}, not {_show(value)}")
    if kind == "STRING":
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind in ("INTEGER", "NUMBER"):
        number = _number(value)
        if number is None:
            raise wrong
        if kind == "NUMBER":
            return number
        if number != int(number):
            raise wrong
        return int(number)
    raise BadArguments(f"{key!r} has an unsupported type {kind}")


def _number(value: Any) -> float | int | None:
    """A finite number from a number or a numeric string; None otherwise (bool, NaN, "abc")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _show(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"


def _show_args(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_show(value)}" for key, value in args.items()) if isinstance(args, Mapping) else "?"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE_CHARS else line[: _MAX_MESSAGE_CHARS - 3] + "..."


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists, so a declaration can be serialised and not mutated."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
