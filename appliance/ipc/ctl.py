"""`appliance ctl`: the command line that talks to the running daemon.

Imported on every `appliance ctl` call, so it stays light: the blocking client end of the
socket and the formatting, never the server, asyncio or logging (a unit test checks what
a whole run loads).  The socket is found by `settings.paths` without loading the config:
a config that would not load must not hide the daemon's state from its owner.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO

from appliance.ipc.client import DaemonNotRunning, request_sync
from appliance.ipc.format import format_muted, format_result, format_status, format_volume
from appliance.ipc.wire import KNOWN_COMMANDS, CommandError, ControlError
from appliance.textsafe import escape_controls

if TYPE_CHECKING:
    import argparse

#: the words `ctl night` takes; `hw.night.OVERRIDES` is the daemon's copy (it imports asyncio,
#: so ctl does not import it) and a unit test keeps the two equal
NIGHT_MODES: tuple[str, ...] = ("on", "off", "auto")
#: the words `ctl mute` takes: muted, then not (the request carries `"muted": true|false`)
MUTE_WORDS: tuple[str, ...] = ("on", "off")
#: what the commands that take an argument take, as `appliance --help` shows it
_ARGUMENT_WORDS = {"volume": "[N|+N|-N]", "night": "|".join(NIGHT_MODES), "mute": f"[{'|'.join(MUTE_WORDS)}]",
                  "say": "TEXT"}
#: commands that, without an argument, show one line of the status instead of changing anything
_STATUS_LINES = {"volume": format_volume, "mute": format_muted}

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_UNREACHABLE = 2
EXIT_USAGE = 2  # argparse's own code for a bad command line


def commands_summary() -> str:
    """Every command `ctl` sends, with its argument, for the line `appliance --help` gives `ctl`."""
    return ", ".join(f"{cmd} {_ARGUMENT_WORDS[cmd]}" if cmd in _ARGUMENT_WORDS else cmd for cmd in KNOWN_COMMANDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ctl` subcommand's own arguments; the caller supplies the default socket path."""
    parser.add_argument("ctl_command", metavar="COMMAND", choices=KNOWN_COMMANDS,
                        help=f"one of: {', '.join(KNOWN_COMMANDS)}")
    parser.add_argument("ctl_args", metavar="ARG", nargs="*",
                        help="volume takes N (0-100), or +N / -N to change it relative to now, and "
                             f"without one prints the volume; night takes {' | '.join(NIGHT_MODES)}; "
                             f"mute takes {' | '.join(MUTE_WORDS)} (the microphone off or on), and without "
                             "one prints whether it is muted")
    parser.add_argument("--socket", dest="ctl_socket", type=Path, metavar="PATH",
                        help="control socket (default: from [control] socket)")
    parser.add_argument("--json", dest="ctl_json", action="store_true",
                        help="print the daemon's raw JSON reply")


def build_ctl_parser(prog: str = "appliance ctl") -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description="Talk to the running appliance daemon.")
    add_arguments(parser)
    return parser


#: the options before `ctl` that take a value, and the ctl options that do (`--json` takes none)
_GLOBAL_VALUES = {"--config": "config", "--set": "overrides", "--log-level": "log_level"}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_quickly(words: Sequence[str]) -> SimpleNamespace | None:
    """`appliance [global options] ctl COMMAND [ARG...] [--socket P] [--json]`, without argparse.

    argparse and what it loads (gettext, locale, shutil and its compressors) cost a slow Pi
    more than the whole request does.  This reads only the plain, well-formed spellings and
    gives the namespace argparse would give; for anything else (an abbreviation, --help, a
    mistake, `--`) it returns None and argparse answers, messages and all.  A unit test keeps
    the two equal.
    """
    args = SimpleNamespace(config=None, overrides=[], log_level=None, command="ctl",
                           ctl_command=None, ctl_args=[], ctl_socket=None, ctl_json=False)
    rest = iter(words)
    for word in rest:
        if word == "ctl":
            break
        name, has_value, value = word.partition("=")
        dest = _GLOBAL_VALUES.get(name)
        if dest is None:
            return None
        if not has_value:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None
        if dest == "overrides":
            args.overrides.append(value)
        elif dest == "log_level" and value not in _LOG_LEVELS:
            return None
        else:
            setattr(args, dest, value)
    else:
        return None
    positionals: list[str] = []
    closed = False  # an option came after the words: argparse takes no more of them
    for word in rest:
        if positionals and (word == "--json" or word.startswith("--socket")):
            closed = True
        if word == "--json":
            args.ctl_json = True
        elif word == "--socket" or word.startswith("--socket="):
            value = word.partition("=")[2] if "=" in word else next(rest, None)
            if not value or value.startswith("-"):
                return None
            args.ctl_socket = Path(value)
        elif word.startswith("-") and not _is_number(word):
            return None
        elif closed:
            return None
        else:
            positionals.append(word)
    if not positionals or positionals[0] not in KNOWN_COMMANDS:
        return None
    args.ctl_command, args.ctl_args = positionals[0], positionals[1:]
    return args


def _is_number(word: str) -> bool:
    """What argparse takes as a positional although it starts with "-" (`volume -5`): its own rule."""
    import re

    return re.fullmatch(r"-\d+|-\d*\.\d+", word) is not None


def ctl_main(argv: Sequence[str] | argparse.Namespace | SimpleNamespace, socket_path: Path) -> int:
    """`appliance ctl ...`; `socket_path` is the configured default, `--socket` overrides it.

    Takes the words after `ctl`, or the namespace of a parser built with add_arguments.
    Exit codes: 0 ok, 1 error reply (or a garbled/late one), 2 daemon unreachable or bad usage.
    """
    if not isinstance(argv, (list, tuple)) and hasattr(argv, "ctl_command"):
        return run_ctl(argv, socket_path)
    parser = build_ctl_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed the usage line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_ctl(args, socket_path)


def ctl_command(
    args: argparse.Namespace | SimpleNamespace,
    *,
    env: Mapping[str, str] = os.environ,
    stderr: TextIO | None = None,
) -> int:
    """`appliance ctl` from the main command line (its --config and --set included).

    `ctl` needs nothing from the config but the socket path, so only that setting is
    looked for; a problem with it (an invalid value, a file that is not TOML) costs one
    warning line and the next layer's value, not the owner's only view of the daemon.
    """
    err = stderr or sys.stderr
    if args.ctl_socket:
        return run_ctl(args, Path(args.ctl_socket), stderr=err)
    from appliance.settings.errors import ConfigError
    from appliance.settings.paths import control_socket_path_for, ctl_socket_setting, secure_control_socket_path_for

    setting, problems = ctl_socket_setting(args.config, args.overrides, env)
    if problems:
        used = control_socket_path_for(setting, env)
        print(f"appliance ctl: warning: {escape_controls('; '.join(problems))}; "
              f"using control socket {escape_controls(str(used))}", file=err)
    try:
        path = secure_control_socket_path_for(setting, env)
    except ConfigError as exc:  # the socket's directory cannot be trusted
        print(f"appliance: {escape_controls(str(exc))}", file=err)
        return EXIT_UNREACHABLE
    return run_ctl(args, path, stderr=err)


def run_ctl(
    args: argparse.Namespace | SimpleNamespace,
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
        print(f"appliance ctl: {escape_controls(str(exc))}", file=err)
        return EXIT_USAGE
    path = Path(args.ctl_socket) if args.ctl_socket else Path(socket_path)
    asks_status = cmd in _STATUS_LINES and not fields  # the volume and the mute are part of the status
    try:
        reply = request_sync(path, "status" if asks_status else cmd, **fields)
    except DaemonNotRunning as exc:
        print(f"appliance ctl: {escape_controls(str(exc))}", file=err)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"appliance ctl: {escape_controls(str(exc))}", file=err)
        return EXIT_ERROR_REPLY
    except KeyboardInterrupt:
        return 130
    if args.ctl_json:
        print(json.dumps(reply, ensure_ascii=False), file=out)
    elif reply["ok"]:
        print(_readable(cmd, reply, asks_status), file=out)
    if not reply["ok"]:
        if not args.ctl_json:
            print(f"appliance ctl: {cmd}: {escape_controls(str(reply.get('error') or 'failed'))}", file=err)
        return EXIT_ERROR_REPLY
    return EXIT_OK


def _readable(cmd: str, reply: dict[str, Any], asks_status: bool) -> str:
    if asks_status:
        return _STATUS_LINES[cmd](reply)
    return format_status(reply) if cmd == "status" else format_result(cmd, reply)


def command_fields(cmd: str, words: list[str]) -> dict[str, Any]:
    """Turn the command-line words after COMMAND into request fields (none for a bare `volume`, `mute`)."""
    if cmd == "night":
        return _night_fields(words)
    if cmd == "mute":
        return _mute_fields(words)
    if cmd == "say":
        if not words:
            raise CommandError('say takes the sentence to speak, e.g. appliance ctl say "The washing machine is done"')
        return {"text": " ".join(words)}
    if cmd != "volume":
        if words:
            raise CommandError(f"{cmd} takes no arguments (got: {' '.join(words)})")
        return {}
    if not words:
        return {}
    if len(words) != 1:
        raise CommandError("volume takes one argument: N (0-100), or +N / -N to change it; none to show it")
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


def _mute_fields(words: list[str]) -> dict[str, Any]:
    choices = "|".join(MUTE_WORDS)
    if not words:
        return {}
    if len(words) != 1:
        raise CommandError(f"mute takes one argument: {choices}; none to show whether it is muted")
    word = words[0].strip().lower()
    if word not in MUTE_WORDS:
        raise CommandError(f"mute takes {choices}; got {words[0]!r}")
    return {"muted": word == MUTE_WORDS[0]}
