"""`appliance ctl`: the command line that talks to the running daemon.

Imported on every `appliance ctl` call, so it stays light: the blocking client end of the
socket and the formatting, never the server or asyncio (a unit test checks what importing
it loads).  The settings are imported only when the default socket has to be found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from appliance.ipc.client import DaemonNotRunning, request_sync
from appliance.ipc.format import format_result, format_status
from appliance.ipc.wire import KNOWN_COMMANDS, CommandError, ControlError
from appliance.logsetup import escape_controls

#: the words `ctl night` takes; `hw.night.OVERRIDES` is the daemon's copy (it imports asyncio,
#: so ctl does not import it) and a unit test keeps the two equal
NIGHT_MODES: tuple[str, ...] = ("on", "off", "auto")

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


def ctl_command(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] = os.environ,
    stderr: TextIO | None = None,
) -> int:
    """`appliance ctl` from the main command line (its --config and --set included).

    `ctl` needs nothing from the config but the socket path, so a config with a mistake
    costs a warning here, not the owner's only way to see what the appliance is doing.
    """
    err = stderr or sys.stderr
    if args.ctl_socket:
        return run_ctl(args, Path(args.ctl_socket), stderr=err)
    from appliance.settings.schema import ConfigError

    def warn(text: str) -> None:
        print(f"appliance ctl: warning: {escape_controls(text)}", file=err)

    try:
        path = default_socket_path(args.config, args.overrides, env=env, warn=warn)
    except ConfigError as exc:  # the socket's directory cannot be trusted
        print(f"appliance: {exc}", file=err)
        return EXIT_UNREACHABLE
    return run_ctl(args, path, stderr=err)


def default_socket_path(
    config: str | None,
    overrides: Sequence[str],
    *,
    env: Mapping[str, str] = os.environ,
    warn: Callable[[str], None],
) -> Path:
    """The socket the daemon with this config listens on, even when the config has a mistake.

    The config loads as the daemon loads it; when it does not, `[control] socket` is taken
    from wherever it is valid (see `salvage_socket_setting`) and `warn` hears one line
    naming the mistake.  Raises ConfigError when the socket's directory is not safe to use.
    """
    from appliance.settings.loader import load_config
    from appliance.settings.paths import (
        control_socket_path_for,
        salvage_socket_setting,
        secure_control_socket_path,
        secure_control_socket_path_for,
    )
    from appliance.settings.schema import ConfigError

    try:
        cfg = load_config(config, env=env, overrides=overrides)
    except ConfigError as exc:
        setting = salvage_socket_setting(config, overrides, env)
        problem = " ".join(str(exc).split())
        warn(f"the config has a mistake ({problem}); using control socket {control_socket_path_for(setting, env)}")
        return secure_control_socket_path_for(setting, env)
    return secure_control_socket_path(cfg, env)


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
        reply = request_sync(path, cmd, **fields)
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
