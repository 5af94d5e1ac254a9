"""The `appliance` command.

Subcommands import what they need when they run, so `demo`, `ask FILE` and
`emulator` work on a machine without PortAudio or GPIO.  `ctl` (run by hand and by
scripts, often on a slow Pi) is parsed by a parser that knows only the global options
and `ctl` itself, so it pays neither for the other subcommands' parsers nor for the
config loader, logging, asyncio, numpy or websockets.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import __version__

if TYPE_CHECKING:
    import argparse


_DESCRIPTION = "Push-to-talk kitchen voice appliance for the Gemini Live API."


def _value_options() -> dict[str, dict[str, Any]]:
    """The options before the command that take a value, for both parsers and `command_word`."""
    from appliance.settings.paths import DEFAULT_CONFIG_PATH, ENV_CONFIG_PATH

    return {
        "--config": {"metavar": "PATH", "help": f"TOML config file (default: ${ENV_CONFIG_PATH}, "
                                                f"else {DEFAULT_CONFIG_PATH} if present)"},
        "--set": {"dest": "overrides", "metavar": "SECTION.KEY=VALUE", "action": "append", "default": [],
                  "help": "override one config value; repeatable"},
        "--log-level": {"choices": ("debug", "info", "warning", "error"),
                        "help": "log level (default: log.level from the config)"},
    }


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    for name, options in _value_options().items():
        parser.add_argument(name, **options)


def _add_ctl(sub: argparse._SubParsersAction) -> None:
    from appliance.ipc.ctl import add_arguments, commands_summary

    ctl = sub.add_parser("ctl", help=f"talk to the running appliance: {commands_summary()}")
    add_arguments(ctl)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="appliance", description=_DESCRIPTION)
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run one whole turn offline against the bundled emulator")
    demo.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                      help="where the question and reply WAVs go (default: ./out)")
    demo.add_argument("--text", default="What can I make with eggs, spinach and a bit of cheese?",
                      help="what the generated speaker says")

    ask = sub.add_parser("ask", help="one turn against the configured endpoint")
    ask.add_argument("wav", nargs="?", type=Path, metavar="FILE.wav",
                     help="the question as a WAV file (8 to 192 kHz, any width and channel count, at most "
                          "5 minutes and 64 MiB); without it, speak into the microphone and hear the reply")
    ask.add_argument("--text", help="ask in text instead of audio")
    ask.add_argument("--out", type=Path, metavar="reply.wav", help="write the spoken reply here (24 kHz)")

    run = sub.add_parser("run", help="run the appliance (the daemon systemd starts)")
    run.add_argument("--keyboard", action="store_true",
                     help="use this terminal instead of a GPIO button: space taps, Enter starts and ends a hold, "
                          "n starts a new conversation, q quits")

    _add_ctl(sub)

    doctor = sub.add_parser("doctor", help="check everything the appliance needs, with what to do about each problem")
    from appliance.commands.doctor_arguments import add_arguments as add_doctor_arguments

    add_doctor_arguments(doctor)

    config = sub.add_parser("config", help="show the effective settings, check the config file for every "
                                           "mistake, or print a commented template")
    from appliance.commands.config_arguments import add_arguments as add_config_arguments

    add_config_arguments(config)

    sub.add_parser("devices", help="list microphones and speakers, the rates they open at, and which are configured")
    sub.add_parser("audio-test", help="check the microphone and speaker: noise floor, clipping, "
                                      "whether the microphone hears the speaker")

    emulator = sub.add_parser("emulator", help="serve the offline Live API emulator on loopback")
    from appliance.emulator.arguments import add_arguments as add_emulator_arguments

    add_emulator_arguments(emulator)
    return parser


def build_ctl_only_parser() -> argparse.ArgumentParser:
    """The global options and `ctl`: what `appliance ... ctl ...` is parsed with."""
    import argparse

    parser = argparse.ArgumentParser(prog="appliance", description=_DESCRIPTION)
    _add_global_options(parser)
    _add_ctl(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand in `argv`, found past the global options as argparse finds it.

    None when an option is not one of the value-taking global options (`--help`,
    `--version`, a typo): the whole parser then answers, as it would anyway.
    """
    value_options = list(_value_options())
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if not word.startswith("-") or word == "-":
            return word
        name, has_value, _ = word.partition("=")
        matches = [option for option in value_options if len(name) > 2 and option.startswith(name)]
        if len(matches) != 1:
            return None
        if not has_value:
            next(words, None)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if command_word(words) == "ctl":
        from appliance.ipc.ctl import parse_quickly

        quick = parse_quickly(words)  # None: argparse answers (help, a mistake, an abbreviation)
        return _ctl(quick if quick is not None else build_ctl_only_parser().parse_args(words))
    parser = build_parser()
    args = parser.parse_args(words)
    if args.command == "ctl":
        return _ctl(args)
    if args.command == "config":  # it reads the config itself: `check` is for one with mistakes
        from appliance.commands.config_cmd import config_command

        return config_command(args)

    from appliance.settings.loader import load_config
    from appliance.settings.paths import secure_control_socket_path
    from appliance.settings.errors import ConfigError
    from appliance.logsetup import setup_logging

    try:
        cfg = load_config(args.config, overrides=args.overrides)
        if args.command == "run":
            secure_control_socket_path(cfg)  # refuse a socket directory someone else could own
    except ConfigError as exc:
        if args.command == "doctor":
            from appliance.commands.doctor import config_error_command

            return config_error_command(str(exc), args)
        print(f"appliance: {exc}", file=sys.stderr)
        return 2
    level = args.log_level or cfg.log.level
    if args.command == "demo" and args.log_level is None:
        level = "warning"  # the demo prints its own timeline
    setup_logging(level)

    try:
        if args.command == "emulator":
            from appliance.emulator import server as emulator_module

            return _run(emulator_module.run_from_args(args))
        if args.command == "ask":
            from appliance.commands.ask import ask_command
            from appliance.commands.turn import AskError

            if args.wav is not None and args.text is not None:
                parser.error("give either FILE.wav or --text, not both")
            try:
                return _run(ask_command(cfg, wav=args.wav, text=args.text, out=args.out))
            except AskError as exc:
                print(f"appliance ask: {exc}", file=sys.stderr)
                return exc.exit_code
        if args.command == "run":
            from appliance.app.daemon import run_command

            def reread() -> Any:  # a reload (SIGHUP) reads the config as this start did
                return load_config(args.config, overrides=args.overrides)

            return _run(run_command(cfg, keyboard=args.keyboard, load=reread))
        if args.command == "doctor":
            from appliance.commands.doctor import doctor_command

            return _run(doctor_command(cfg, args))
        if args.command == "devices":
            from appliance.audio.devices import devices_command

            return devices_command(cfg.audio)
        if args.command == "audio-test":
            from appliance.commands.audio_test import audio_test_command

            return _run(audio_test_command(cfg))
        if args.command == "demo":
            from appliance.commands.demo import demo_command

            return _run(demo_command(args.out, args.text))
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


def _ctl(args: Any) -> int:
    from appliance.ipc.ctl import ctl_command

    try:
        return ctl_command(args)  # it needs only the socket path, even from a config with a mistake
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, imported here so that `ctl` never pays for asyncio."""
    import asyncio

    return asyncio.run(coro)


if __name__ == "__main__":
    sys.exit(main())
