"""`appliance doctor`: check, one thing at a time, what the appliance needs to work on this box.

Each check is a small coroutine that returns a `Check` (or one per server, for `mcp`): a
name, pass or fail, what it saw, and (on failure) what to do about it.  This package holds
the command; the checks live in one module per part of the box (`config_checks`,
`network_checks`, `mcp_checks`, `audio_checks`, `gpio_checks`, `system_checks`), `runner`
runs them in order under time limits, `machine`
is the outside world they touch, and `report` is the verdict and its printing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from appliance.console import print_now
from appliance.commands.doctor.machine import DoctorEnv
from appliance.commands.doctor.report import failed, format_line, print_json, summary_line
from appliance.commands.doctor.runner import quiet_logs, run_checks
from appliance.commands.doctor_arguments import add_arguments
from appliance.settings.schema import Config

__all__ = ["add_arguments", "config_error_command", "doctor_command"]

_CONFIG_ADVICE = (
    "fix this in the config file (or wherever the value was set: environment or --set), then run doctor again"
)


def config_error_command(
    message: str,
    args: argparse.Namespace,
    *,
    printer: Callable[[str], None] = print_now,
) -> int:
    """`appliance doctor` when the config does not load: one failed `config` check, exit 1.

    Nothing else can be checked without a config, but a caller of `doctor --json` still
    gets the same JSON shape it always gets, so it can read what went wrong.
    """
    result = failed("config", " ".join(message.split()), _CONFIG_ADVICE)
    if getattr(args, "json", False):
        print_json([result], printer)
    else:
        printer(format_line(result))
        printer(summary_line([result]))
    return 1


async def doctor_command(
    cfg: Config,
    args: argparse.Namespace,
    *,
    printer: Callable[[str], None] = print_now,
    env: DoctorEnv | None = None,
) -> int:
    """`appliance doctor`: 0 when every check passed, 1 otherwise."""
    as_json = bool(getattr(args, "json", False))
    only = tuple(getattr(args, "only", None) or ())
    keyboard = bool(getattr(args, "keyboard", False))
    stream = None if as_json else (lambda check: printer(format_line(check)))
    with quiet_logs():
        results = await run_checks(cfg, env, only=only, on_result=stream, keyboard=keyboard)
    ok = all(check.ok for check in results)
    if as_json:
        print_json(results, printer)
    else:
        printer(summary_line(results))
    return 0 if ok else 1
