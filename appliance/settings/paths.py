"""Where the appliance keeps its state and its control socket, and keeping that socket private.

Import-light on purpose (stdlib and the settings' error type): `appliance ctl` and the
daemon both ask for the socket path before anything else starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.settings.schema import ConfigError

if TYPE_CHECKING:
    from appliance.settings.schema import Config

__all__ = [
    "RUNTIME_FALLBACK_PARENT",
    "control_socket_path",
    "secure_control_socket_path",
    "state_dir",
]

#: where the control socket goes when neither systemd nor the login session gives a runtime directory
RUNTIME_FALLBACK_PARENT = "/tmp"


def state_dir(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """The state directory: `[state] dir`, else systemd's $STATE_DIRECTORY, else ~/.local/state."""
    if cfg.state.dir:
        return Path(cfg.state.dir).expanduser()
    systemd_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "appliance"


def control_socket_path(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """`[control] socket`, else systemd's $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/appliance.

    Only computes the path; `secure_control_socket_path` is what the daemon and `ctl` use.
    """
    if cfg.control.socket:
        return Path(cfg.control.socket).expanduser()
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "control.sock"
    base = env.get("XDG_RUNTIME_DIR") or _runtime_fallback_dir()
    return Path(base) / "appliance" / "control.sock"


def _runtime_fallback_dir() -> Path:
    return Path(RUNTIME_FALLBACK_PARENT) / f"appliance-{os.getuid()}"


def secure_control_socket_path(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """The control socket path, after making sure nobody else controls its directory.

    Without systemd's or the login session's runtime directory the socket lives under
    /tmp/appliance-UID, and anyone can create that name first: a socket there could be
    someone else's, answering `ctl` or taking the daemon's place.  So both the daemon and
    `ctl` call this: the directory is created with mode 0700 when missing, and refused
    (ConfigError, one line) when it is a symlink, not ours, or open to group or others.
    """
    path = control_socket_path(cfg, env)
    fallback = _runtime_fallback_dir()
    if fallback in path.parents:
        _ensure_private_dir(fallback)
    return path


def _ensure_private_dir(directory: Path) -> None:
    created = False
    try:
        os.mkdir(directory, 0o700)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"cannot create the control socket directory {directory}: {exc.strerror or exc}; "
            "set XDG_RUNTIME_DIR or [control] socket"
        ) from None
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise ConfigError(f"cannot inspect the control socket directory {directory}: {exc.strerror or exc}") from None
    fix = f"remove it (rm -r {directory}) or set XDG_RUNTIME_DIR or [control] socket"
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"control socket directory {directory} is a symlink, which anyone could have made; {fix}")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"control socket directory {directory} is not a directory; {fix}")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"control socket directory {directory} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}), so it cannot be trusted; {fix}"
        )
    if created:
        try:
            os.chmod(directory, 0o700)  # mkdir's mode went through the umask
        except OSError as exc:
            raise ConfigError(
                f"cannot make the control socket directory {directory} private: {exc.strerror or exc}"
            ) from None
    elif info.st_mode & 0o077:
        raise ConfigError(
            f"control socket directory {directory} has mode {stat.S_IMODE(info.st_mode):04o}, open to other "
            f"users, so what is in it cannot be trusted; {fix}"
        )
