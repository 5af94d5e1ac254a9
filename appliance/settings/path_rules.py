"""What the kernel would refuse in a path: the rules for every path setting.

Kept apart from the other checks, with nothing but the standard library, because
`appliance ctl` checks the control socket's path on every call and must not pay for
the rest of the settings to do it.
"""

from __future__ import annotations

import os

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "MAX_SOCKET_PATH_BYTES", "check_path", "check_socket_path"]

#: what Linux allows for a whole path and for one name in it (PATH_MAX, NAME_MAX)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
#: sun_path is 108 bytes including the terminating NUL
MAX_SOCKET_PATH_BYTES = 107


def check_path(text: str) -> str | None:
    """What the kernel (or pathlib) would refuse in a path, said before anything uses it."""
    if not text:
        return None
    if "\x00" in text:
        return "must not contain a NUL byte"
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        return "holds characters no file name can (a lone surrogate)"
    if len(raw) > MAX_PATH_BYTES:
        return f"is {len(raw)} bytes long; a path can be at most {MAX_PATH_BYTES} bytes"
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > MAX_NAME_BYTES:
        return (
            f"has a name of {longest} bytes in it; each part of a path can be at most "
            f"{MAX_NAME_BYTES} bytes"
        )
    first = text.split("/", 1)[0]
    if first.startswith("~") and os.path.expanduser(first) == first:
        whose = "this user has no home directory" if first == "~" else f"there is no user {first[1:]}"
        return f"starts with {first}, but {whose}; give an absolute path"
    return None


def check_socket_path(path: str) -> str | None:
    problem = check_path(path)
    if problem or not path:
        return problem
    length = len(os.fsencode(os.path.expanduser(path)))
    if length > MAX_SOCKET_PATH_BYTES:
        return (
            f"is {length} bytes long; a Unix socket path can be at most {MAX_SOCKET_PATH_BYTES} "
            "bytes, choose a shorter one"
        )
    return None
