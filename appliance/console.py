"""Lines for a person at a terminal, out at once.

Through a pipe (`ssh box appliance doctor | less`, a test reading the prompt, systemd's
journal) Python buffers stdout, and a prompt such as "listening: speak now" would arrive
only when the command ends. Every command that talks to a person prints through this.
"""

from __future__ import annotations

__all__ = ["print_now"]


def print_now(line: str) -> None:
    """Print one line and flush it."""
    print(line, flush=True)
