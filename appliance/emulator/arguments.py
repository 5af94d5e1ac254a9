"""The `appliance emulator` command line, importable without the emulator itself.

`appliance --help` and `appliance ctl` build every subcommand's arguments; keeping these
here means neither pays for websockets and numpy just to print help.
"""

from __future__ import annotations

import argparse

SCENARIO_HELP = (
    "echo | tone[:SECONDS] | silent | cancel-tools | tool:NAME[:JSON_ARGS] | nonblocking-tool:NAME[:JSON_ARGS] | "
    "transcript:TEXT | reply-text:TEXT | urlsafe-b64 | interaction-status | barge-no-complete | "
    "drop-after:N | drop-mid-reply:FRACTION | close:CODE[:REASON] | close-after:N:CODE[:REASON] | "
    "reject-setup:CODE[:REASON] | malformed | unknown-message | slow-setup:SECONDS | fault-connections:K"
)


def _lifetime_arg(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the lifetime must not be negative")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: pick a free one)")
    parser.add_argument("--scenario", action="append", default=[], metavar="SPEC",
                        help=f"reply/fault option, repeatable: {SCENARIO_HELP}")
    parser.add_argument("--lifetime", type=_lifetime_arg, default=600.0, metavar="SECONDS",
                        help="send goAway after this long per connection; 'none' disables (default 600)")
    parser.add_argument("--grace", type=_non_negative, default=50.0, metavar="SECONDS",
                        help="seconds between goAway and the 1011 close (default 50)")
    parser.add_argument("--pace", type=_non_negative, default=1.7,
                        help="reply speed vs real time; 0 = as fast as possible (default 1.7)")
    parser.add_argument("--log", default=None, metavar="PATH",
                        help="append a JSON-lines log of received messages (audio replaced by byte counts)")
