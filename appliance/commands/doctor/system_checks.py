"""Doctor's checks of the box itself: the clock, the power supply and the free disk space.

Each asks the system's own tool or call (timedatectl, vcgencmd, statvfs) through
`DoctorEnv`, and reads a tool that is missing or says nothing as an answer in itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.commands.doctor.machine import COMMAND_TIMEOUT_S, CheckContext, blocking, first_line, os_error_text
from appliance.commands.doctor.report import Check, failed, passed, skipped
from appliance.settings.paths import state_dir

__all__ = [
    "MIN_FREE_BYTES",
    "MIN_PLAUSIBLE_YEAR",
    "THROTTLE_BITS",
    "check_clock",
    "check_disk",
    "check_power",
    "describe_throttled",
    "parse_throttled",
]

#: a year before this means the clock was never set (a Pi has no battery-backed clock)
MIN_PLAUSIBLE_YEAR = 2025
#: less free space than this under the state directory fails the disk check
MIN_FREE_BYTES = 100 * 1024 * 1024


# --------------------------------------------------------------------------- clock


async def check_clock(ctx: CheckContext) -> Check:
    name = "clock"
    env = ctx.env
    now = env.now()
    shown = now.strftime("%Y-%m-%d %H:%M UTC") if now.tzinfo else now.strftime("%Y-%m-%d %H:%M")
    advice = (
        "TLS fails with a wrong clock and a Pi has no battery-backed clock: check the network, then "
        "`timedatectl timesync-status`; systemd-timesyncd (or chrony) must be running and able to reach a time server"
    )
    tool = env.which("timedatectl")
    note = "no timedatectl"
    if tool:
        result = await blocking(lambda: env.run([tool, "show", "-p", "NTPSynchronized", "--value"], COMMAND_TIMEOUT_S))
        answer = result.stdout.strip().lower()
        if result.returncode == 0 and answer == "yes":
            return passed(name, f"synchronised (timedatectl); {shown}")
        if result.returncode == 0 and answer == "no":
            return failed(name, f"not synchronised yet (timedatectl says NTPSynchronized=no); it reads {shown}", advice)
        reason = first_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
        note = f"timedatectl gave no answer ({reason})"
    if now.year < MIN_PLAUSIBLE_YEAR:
        return failed(name, f"{note}, and the clock reads {shown}, which cannot be right", advice)
    return passed(name, f"{note}; the clock reads {shown}, which is plausible (synchronisation not confirmed)")


# --------------------------------------------------------------------------- power


#: bit -> what it means, from `vcgencmd get_throttled`
THROTTLE_BITS: dict[int, str] = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
_THROTTLED = re.compile(r"throttled\s*=\s*(0x[0-9a-fA-F]+|\d+)")


def parse_throttled(text: str) -> int | None:
    """The bitmask from `vcgencmd get_throttled` output (``throttled=0x50005``), or None."""
    match = _THROTTLED.search(text)
    if match is None:
        return None
    return int(match.group(1), 0)


def describe_throttled(mask: int) -> list[str]:
    words = [meaning for bit, meaning in THROTTLE_BITS.items() if mask & (1 << bit)]
    unknown = mask & ~sum(1 << bit for bit in THROTTLE_BITS)
    if unknown:
        words.append(f"other flags {unknown:#x}")
    return words


async def check_power(ctx: CheckContext) -> Check:
    name = "power"
    env = ctx.env
    tool = env.which("vcgencmd")
    if not tool:
        return skipped(name, "no vcgencmd (not a Raspberry Pi OS system)")
    result = await blocking(lambda: env.run([tool, "get_throttled"], COMMAND_TIMEOUT_S))
    mask = parse_throttled(result.stdout) if result.returncode == 0 else None
    if mask is None:
        said = first_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
        return failed(name, f"vcgencmd get_throttled gave no reading ({said})",
                      "run `vcgencmd get_throttled` by hand to see why")
    if mask == 0:
        return passed(name, "no under-voltage or throttling since boot (throttled=0x0)")
    words = describe_throttled(mask)
    power_problem = mask & ((1 << 0) | (1 << 16))
    advice = (
        "the supply sags: use the official power supply for this Pi model and a short, thick USB cable; "
        "a speaker amplifier on the 5 V pin adds to the load"
        if power_problem
        else "the Pi gets too hot or is throttled: give it air or a heatsink"
    )
    return failed(name, f"{', '.join(words)} (throttled={mask:#x})", advice)


# --------------------------------------------------------------------------- disk


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _bytes_text(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit in ("B", "KB") else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


async def check_disk(ctx: CheckContext) -> Check:
    name = "disk"
    wanted = state_dir(ctx.cfg, ctx.env.environ)
    where = _existing_ancestor(wanted)
    try:
        usage = await blocking(lambda: ctx.env.disk_usage(where))
    except OSError as exc:
        return failed(name, f"cannot read free space under {where}: {os_error_text(exc)}", "check the mount")
    free = float(usage.free)
    text = f"{_bytes_text(free)} free under {wanted}" + ("" if where == wanted else f" (at {where})")
    if free < MIN_FREE_BYTES:
        return failed(
            name,
            f"only {text}; at least {_bytes_text(MIN_FREE_BYTES)} is needed",
            "free some space: sudo apt clean; sudo journalctl --vacuum-size=50M; remove old files",
        )
    return passed(name, text)
