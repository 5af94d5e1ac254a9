"""The `appliance config` command line, importable without the settings it reports on.

Every `appliance` call builds every subcommand's arguments, so this module imports only
argparse; `config_cmd` does the work.
"""

from __future__ import annotations

import argparse

#: the actions, in the order `appliance config --help` lists them
ACTIONS: dict[str, str] = {
    "show": "print every effective setting and where it came from (secrets hidden)",
    "check": "list every mistake in the config file, the environment and --set; exit 1 if any",
    "template": "print a commented config file with every setting at its default",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    for name, summary in ACTIONS.items():
        action = actions.add_parser(name, help=summary, description=summary)
        if name == "check":
            action.add_argument("file", nargs="?", metavar="FILE",
                                help="the file to check (default: the one every command reads: --config, "
                                     "else $APPLIANCE_CONFIG, else the default path)")
