"""`appliance ctl`: the command line that talks to the running daemon.

Imported on every `appliance ctl` call, so it stays light: the client end of the socket
and the formatting, never the server (a unit test checks what importing it loads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from appliance.hw.night import OVERRIDES as NIGHT_MODES
from appliance.ipc.client import DaemonNotRunning, request
from appliance.ipc.format import format_result, format_status
from appliance.ipc.wire import KNOWN_COMMANDS, CommandError, ControlError
from appliance.logsetup import escape_controls

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_UNREACHABLE = 2
EXIT_USAGE = 2  # argparse's own code for a bad command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ctl` subcommand's own arguments; the caller supplies the default socket path."""
    parser.add_argument("ctl_command", metavar="COMMAND", choices=KNOWN_COMMANDS,
                        help=f"one of: {', '.join(KNOWN_COMMANDS)}")
    parser.add_argument("ctl_args", metavar="ARG", nargs="*",
                        help="volume takes N (0-100), or +N / -N to change it relative to now; "
                             f"night takes {' | '.join(NIGHT_MODES)}")
    parser.add_argument("--socket", dest="ctl_socket", type=Path, metavar="PATH",
                        help="control socket (default: from [control] socket)")
    parser.add_argument("--json", dest="ctl_json", action="store_true",
                        help="print the daemon's raw JSON reply")


def build_ctl_parser(prog: str = "appliance ctl") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Talk to the running appliance daemon.")
    add_arguments(parser)
    return parser


def ctl_main(argv: Sequence[str] | argparse.Namespace, socket_path: Path) -> int:
    """`appliance ctl ...`; `socket_path` is the configured default, `--socket` overrides it.

    Takes the words after `ctl`, or the namespace of a parser built with add_arguments.
    Exit codes: 0 ok, 1 error reply (or a garbled/late one), 2 daemon unreachable or bad usage.
    """
    if isinstance(argv, argparse.Namespace):
        return run_ctl(argv, socket_path)
    parser = build_ctl_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed the usage line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_ctl(args, socket_path)


def run_ctl(
    args: argparse.Namespace,
    socket_path: Path,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`appliance ctl` from already parsed arguments (for a parser built with add_arguments)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    cmd: str = args.ctl_command
    try:
        fields = command_fields(cmd, list(args.ctl_args))
    except CommandError as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_USAGE
    path = Path(args.ctl_socket) if args.ctl_socket else Path(socket_path)
    try:
        reply = asyncio.run(request(path, cmd, **fields))
    except DaemonNotRunning as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"appliance ctl: {exc}", file=err)
        return EXIT_ERROR_REPLY
    except KeyboardInterrupt:
        return 130
    if args.ctl_json:
        print(json.dumps(reply, ensure_ascii=False), file=out)
    elif reply["ok"]:
        print(format_status(reply) if cmd == "status" else format_result(cmd, reply), file=out)
    if not reply["ok"]:
        if not args.ctl_json:
            print(f"appliance ctl: {cmd}: {escape_controls(str(reply.get('error') or 'failed'))}", file=err)
        return EXIT_ERROR_REPLY
    return EXIT_OK


def command_fields(cmd: str, words: list[str]) -> dict[str, Any]:
    """Turn the command-line words after COMMAND into request fields."""
    if cmd == "night":
        return _night_fields(words)
    if cmd != "volume":
        if words:
            raise CommandError(f"{cmd} takes no arguments (got: {' '.join(words)})")
        return {}
    if len(words) != 1:
        raise CommandError("volume takes one argument: N (0-100), or +N / -N to change it")
    word = words[0].strip()
    sign = word[:1] if word[:1] in "+-" else ""
    digits = word[len(sign):]
    if not digits.isdigit() or not digits.isascii() or int(digits) > 100:
        raise CommandError(f"volume takes N (0-100), or +N / -N to change it; got {word!r}")
    if sign == "+":
        return {"delta": int(digits)}
    if sign == "-":
        return {"delta": -int(digits)}
    return {"value": int(digits)}


def _night_fields(words: list[str]) -> dict[str, Any]:
    modes = "|".join(NIGHT_MODES)
    if len(words) != 1:
        raise CommandError(f"night takes one argument: {modes}")
    word = words[0].strip().lower()
    if word not in NIGHT_MODES:
        raise CommandError(f"night takes {modes}; got {words[0]!r}")
    return {"mode": word}
