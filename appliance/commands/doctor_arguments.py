"""The `appliance doctor` command line, importable without the doctor and its checks.

Every `appliance` call builds every subcommand's arguments (`ctl status` included), so the
check names live here, not beside the checks; `doctor.runner` pairs each name with its check.
"""

from __future__ import annotations

import argparse

#: the checks, in the order doctor runs and prints them
CHECK_NAMES: tuple[str, ...] = (
    "config", "api-key", "clock", "network", "key-accepted",
    "audio-devices", "microphone", "gpio", "power", "disk",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"ok": ..., "checks": [...]} instead of text')
    parser.add_argument("--only", action="append", default=[], choices=CHECK_NAMES, metavar="CHECK",
                        help=f"run only this check; repeatable ({', '.join(CHECK_NAMES)})")
