"""Small network facts shared by the client, the config check and the emulator."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for this machine only: localhost, 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
