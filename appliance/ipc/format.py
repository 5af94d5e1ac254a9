"""How `appliance ctl` shows the daemon's replies to a person.

Every text that came over the socket (a timer label the service chose, an error) is
escaped before it reaches the terminal, so a reply cannot move the cursor or retitle it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from appliance.ipc.wire import Reply, is_int
from appliance.textsafe import escape_controls

_TURN_LABELS = {
    "press_to_start_ms": "press→start",
    "release_to_end_ms": "release→end",
    "end_to_first_audio_ms": "end→first audio",
    "first_audio_to_device_ms": "first audio→device",
    "barge_in_to_silent_ms": "barge-in→silent",
    "reply_ms": "reply",
}
_TURN_PLAIN = ("mode", "outcome", "end_reason")  # words that read fine without their key


def _human_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _show(value: Any) -> str:
    """A reply value for the terminal; text (a timer label the service chose, say) is escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (dict, list)):
        return escape_controls(json.dumps(value, ensure_ascii=False))
    return escape_controls(str(value))


def _turn_line(turn: Any) -> str:
    """One turn's metrics on one line; unset metrics and false flags are left out."""
    if not isinstance(turn, dict):
        return _show(turn)
    parts: list[str] = []
    at = turn.get("at")
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        parts.append(time.strftime("%H:%M:%S", time.localtime(at)))
    for key, value in turn.items():
        if key in ("at", "turn", "id") or value is None or value is False or value == "":
            continue
        label = _TURN_LABELS.get(key) or key.removesuffix("_ms").replace("_", " ")
        if key in _TURN_PLAIN:
            parts.append(_show(value))
        elif value is True:
            parts.append(label)
        elif key.endswith("_ms") and isinstance(value, (int, float)):
            parts.append(f"{label} {value:.0f} ms")
        else:
            parts.append(f"{label} {_show(value)}")
    number = turn.get("turn", turn.get("id"))
    prefix = f"#{number} " if number is not None else ""
    return prefix + (", ".join(parts) or "(no metrics)")


def _announcement(item: dict[str, Any]) -> str:
    """`"The washing is done": spoken`, or dropped with the reason."""
    why = f" ({_show(item['why'])})" if item.get("why") else ""
    return f"\"{_show(item.get('text'))}\": {_show(item.get('state'))}{why}"


def format_status(reply: Reply) -> str:
    """A readable summary of a status reply.

    Understood fields: state, connection, model, voice, language (None: the model's default),
    session_age_s, volume (0-100), muted (shown when the reply has it), last_error, night
    (how night mode stands, shown when the reply has it), timers, turns (a list of dicts;
    keys ending in _ms are shown as milliseconds, `at` as a wall-clock time); any other
    field is listed as is.
    """
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label + ':':<16} {text}")

    row("state", _show(reply.get("state")))
    row("connection", _show(reply.get("connection")))
    for key in ("model", "voice"):
        if key in reply:
            row(key, _show(reply[key]))
    if "language" in reply:
        row("language", _show(reply["language"]) if reply["language"] else "the model's default")
    age = reply.get("session_age_s")
    row("session age", _human_duration(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else "-")
    volume = reply.get("volume")
    row("volume", f"{volume}%" if is_int(volume) else _show(volume))
    if "muted" in reply:
        row("muted", _show(reply["muted"]))
    row("last error", _show(reply.get("last_error")) if reply.get("last_error") else "none")
    if "night" in reply:
        row("night", _show(reply["night"]))
    shown = {"ok", "state", "connection", "model", "voice", "language", "session_age_s", "volume", "muted",
             "last_error", "night", "turns", "timers", "home_servers", "announcements"}
    for key, value in reply.items():
        if key in shown:
            continue
        if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool):
            row(key.removesuffix("_s").replace("_", " "), _human_duration(value))
        else:
            row(key.replace("_", " "), _show(value))
    for key, title in (("home_servers", "home servers"), ("announcements", "announcements")):
        items = reply.get(key)
        if isinstance(items, list) and items:
            lines.append(f"{title}:")
            lines.extend(f"  {_show(item) if not isinstance(item, dict) else _announcement(item)}" for item in items)
    if isinstance(reply.get("timers"), list):
        lines.append(format_timers(reply["timers"]))
    turns = reply.get("turns")
    if isinstance(turns, list) and turns:
        lines.append("last turns:")
        lines.extend(f"  {_turn_line(turn)}" for turn in turns)
    return "\n".join(lines)


def format_timers(timers: list[Any]) -> str:
    """`timers: none`, or one line per timer: label, id, what is left or that it rings."""
    if not timers:
        return "timers:          none"
    lines = ["timers:"]
    for timer in timers:
        if not isinstance(timer, dict):
            continue
        left = timer.get("remaining_s")
        when = "RINGING" if timer.get("state") == "ringing" else (
            f"{_human_duration(left)} left" if isinstance(left, (int, float)) else "-")
        lines.append(f"  {_show(timer.get('label'))} ({_show(timer.get('id'))}): {when}")
    return "\n".join(lines)


def format_volume(reply: Reply) -> str:
    """`volume: N%` from a reply that carries the volume (a status reply, for a bare `ctl volume`)."""
    volume = reply.get("volume")
    return f"volume: {volume}%" if is_int(volume) else f"volume: {_show(volume)}"


def format_muted(reply: Reply) -> str:
    """`muted: yes` or `muted: no` from a reply that carries it (a status reply, for a bare `ctl mute`)."""
    return f"muted: {_show(reply.get('muted'))}"


def format_result(cmd: str, reply: Reply) -> str:
    """One line for a successful non-status command."""
    if cmd == "timers":
        return format_timers(reply.get("timers") or [])
    extras = {key: value for key, value in reply.items() if key != "ok"}
    headline = f"{cmd}: ok"
    if cmd == "volume" and is_int(extras.get("volume")):
        headline = format_volume(extras)
        del extras["volume"]
    elif cmd == "night" and "night" in extras:
        headline = f"night: {_show(extras.pop('night'))}"
    elif cmd == "mute" and "muted" in extras:
        headline = format_muted(extras)
        del extras["muted"]
    details = ", ".join(f"{key.replace('_', ' ')} {_show(value)}" for key, value in extras.items())
    return headline + (f" ({details})" if details else "")
