"""Where the appliance keeps its state and its control socket, and keeping that socket private.

Import-light on purpose (stdlib and the settings' error type): `appliance ctl` and the
daemon both ask for the socket path before anything else starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.settings.schema import ConfigError

if TYPE_CHECKING:
    from appliance.settings.fields import Spec
    from appliance.settings.schema import Config

__all__ = [
    "RUNTIME_FALLBACK_PARENT",
    "control_socket_path",
    "control_socket_path_for",
    "salvage_socket_setting",
    "secure_control_socket_path",
    "secure_control_socket_path_for",
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
    return control_socket_path_for(cfg.control.socket, env)


def control_socket_path_for(setting: str, env: Mapping[str, str] = os.environ) -> Path:
    """`control_socket_path` from the `[control] socket` value alone (for `ctl` without a config)."""
    if setting:
        return Path(setting).expanduser()
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
    return secure_control_socket_path_for(cfg.control.socket, env)


def secure_control_socket_path_for(setting: str, env: Mapping[str, str] = os.environ) -> Path:
    """`secure_control_socket_path` from the `[control] socket` value alone."""
    path = control_socket_path_for(setting, env)
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


def salvage_socket_setting(
    cli_path: str | None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
) -> str:
    """`[control] socket` from a config that does not load as a whole ("" for the default).

    `ctl` needs only this one value, so it takes it from the highest layer where it is
    valid: `--set` (the last one first), then the environment, then the file (when that
    parses as TOML); every other mistake is the loader's to report.  Imports the loader,
    which a failed load has already paid for.
    """
    from appliance.settings.fields import convert_text, convert_typed, sections

    spec = sections()["control"][1]["socket"]
    candidates: list[tuple[Callable[[Spec, Any], Any], Any]] = []
    for item in reversed(overrides):
        name, sep, raw = item.partition("=")
        if sep and name.strip() == spec.dotted:
            candidates.append((convert_text, raw))
    if spec.env_name in env:
        candidates.append((convert_text, env[spec.env_name]))
    table = _file_section(cli_path, env, spec.section)
    if spec.name in table:
        candidates.append((convert_typed, table[spec.name]))
    for convert, raw in candidates:
        value = _valid_setting(spec, convert, raw)
        if value is not None:
            return value
    return ""


def _valid_setting(spec: Spec, convert: Callable[[Spec, Any], Any], raw: Any) -> str | None:
    """The value when it converts and passes the setting's own checks, else None."""
    from appliance.settings.fields import constraint_problem

    try:
        value = convert(spec, raw)
    except ValueError:
        return None
    value, problem = constraint_problem(spec, value)
    return None if problem else value


def _file_section(cli_path: str | None, env: Mapping[str, str], section: str) -> dict[str, Any]:
    """One table of the config file, read as carefully as the loader reads it; {} when unreadable."""
    import tomllib

    from appliance.atomicfile import FileRefused, read_regular_file
    from appliance.settings.loader import CONFIG_MAX_BYTES, find_config_path

    try:
        path = find_config_path(cli_path, env)
        if path is None:
            return {}
        document = tomllib.loads(read_regular_file(path, CONFIG_MAX_BYTES).decode("utf-8"))
    except (ConfigError, FileRefused, OSError, ValueError, RecursionError, MemoryError):
        return {}
    table = document.get(section)
    return table if isinstance(table, dict) else {}
