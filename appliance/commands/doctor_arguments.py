"""The `appliance doctor` command line, importable without the doctor and its checks.

Every `appliance` call builds every subcommand's arguments (`ctl status` included), so the
check names live here, not beside the checks; `doctor.runner` pairs each name with its check.
"""

from __future__ import annotations

import argparse

#: the checks, in the order doctor runs and prints them
CHECK_NAMES: tuple[str, ...] = (
    "config", "api-key", "clock", "network", "key-accepted", "mcp",
    "audio-devices", "microphone", "gpio", "power", "disk",
)

#: how the gpio check treats a machine without GPIO (also said in README's doctor row)
GPIO_RULE = (
    'gpio: with button.enabled = false and leds.kind = "none" the check is skipped and passes. With '
    "button.enabled = true on a machine that has no GPIO (not a Raspberry Pi) it fails and says to use "
    "keyboard mode; --keyboard keeps the config as it is and leaves the button out."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"ok": ..., "checks": [...]} instead of text')
    parser.add_argument("--only", action="append", default=[], choices=CHECK_NAMES, metavar="CHECK",
                        help=f"run only this check; repeatable ({', '.join(CHECK_NAMES)})")
    parser.add_argument("--keyboard", action="store_true",
                        help="I will press with the keyboard (`appliance run --keyboard`) or `appliance ctl press`: "
                             "leave the GPIO button out of the gpio check (LEDs are still checked if configured)")
    parser.epilog = GPIO_RULE

