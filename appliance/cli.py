"""The `appliance` command.

Subcommands import what they need when they run, so `demo`, `ask FILE` and
`emulator` work on a machine without PortAudio or GPIO, and `ctl` (run by hand and
by scripts, often on a slow Pi) starts without asyncio, numpy or websockets: every
subcommand's arguments come from a module that imports only argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from appliance import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Push-to-talk kitchen voice appliance for the Gemini Live API.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: $APPLIANCE_CONFIG, "
                        "else /etc/appliance/config.toml if present)")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        help="override one config value; repeatable")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="log level (default: log.level from the config)")
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

    ctl = sub.add_parser("ctl", help="talk to the running appliance: status, press, release, tap, stop, "
                                     "volume N, new-conversation, timers, night on|off|auto")
    from appliance.ipc.ctl import add_arguments as add_ctl_arguments

    add_ctl_arguments(ctl)

    doctor = sub.add_parser("doctor", help="check everything the appliance needs, with what to do about each problem")
    from appliance.commands.doctor_arguments import add_arguments as add_doctor_arguments

    add_doctor_arguments(doctor)

    sub.add_parser("devices", help="list microphones and speakers, the rates they open at, and which are configured")
    sub.add_parser("audio-test", help="check the microphone and speaker: noise floor, clipping, "
                                      "whether the microphone hears the speaker")

    emulator = sub.add_parser("emulator", help="serve the offline Live API emulator on loopback")
    from appliance.emulator.arguments import add_arguments as add_emulator_arguments

    add_emulator_arguments(emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "ctl":
        from appliance.ipc.ctl import ctl_command

        try:
            return ctl_command(args)  # it needs only the socket path, even from a config with a mistake
        except KeyboardInterrupt:
            return 130

    from appliance.settings.loader import load_config
    from appliance.settings.paths import secure_control_socket_path
    from appliance.settings.schema import ConfigError
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

            return _run(run_command(cfg, keyboard=args.keyboard))
        if args.command == "doctor":
            from appliance.commands.doctor import doctor_command

            return _run(doctor_command(cfg, args))
        if args.command == "devices":
            return devices_command(cfg)
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


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, imported here so that `ctl` never pays for asyncio."""
    import asyncio

    return asyncio.run(coro)


def devices_command(cfg) -> int:
    try:
        from appliance.audio.devices import devices_report, open_pyaudio

        pa = open_pyaudio()
    except ImportError:
        print("appliance devices: PyAudio is not installed; run scripts/bootstrap.sh", file=sys.stderr)
        return 2
    try:
        print(devices_report(pa, cfg.audio))
    finally:
        pa.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
