"""Where the appliance finds its config file, keeps its state and its control socket.

Import-light on purpose (stdlib and the settings' error type): `appliance ctl` and the
daemon both ask for the socket path before anything else starts, and `ctl` finds it
here without loading the config (`ctl_socket_setting`); the loader reads the config
file with the same functions.  tomllib and the settings' checks are imported only
when something needs them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.settings.errors import ConfigError

if TYPE_CHECKING:
    from appliance.settings.schema import Config

__all__ = [
    "CONFIG_MAX_BYTES",
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG_PATH",
    "RUNTIME_FALLBACK_PARENT",
    "SOCKET_ENV",
    "SOCKET_SETTING",
    "control_socket_path",
    "control_socket_path_for",
    "ctl_socket_setting",
    "find_config_path",
    "parse_config_text",
    "read_config_text",
    "secure_control_socket_path",
    "secure_control_socket_path_for",
    "state_dir",
]

DEFAULT_CONFIG_PATH = "/etc/appliance/config.toml"
ENV_CONFIG_PATH = "APPLIANCE_CONFIG"
#: the config file is read only up to this size (a real one is a few KiB)
CONFIG_MAX_BYTES = 256 * 1024

#: `[control] socket` as `--set` and the environment name it.  The schema's spec is the owner;
#: these copies let `ctl` look for the value without deriving every spec, and a unit test
#: keeps them equal to the spec's `dotted` and `env_name`.
SOCKET_SETTING = "control.socket"
SOCKET_ENV = "APPLIANCE_CONTROL_SOCKET"

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


# --------------------------------------------------------------------------- the config file


def find_config_path(cli_path: str | None, env: Mapping[str, str]) -> Path | None:
    """`--config PATH`, else `$APPLIANCE_CONFIG`, else the default file if present.

    A file named explicitly (flag or environment) must exist.
    """
    if cli_path is not None:
        return _explicit_path(cli_path, "--config")
    from_env = env.get(ENV_CONFIG_PATH, "")
    if from_env:
        return _explicit_path(from_env, f"environment variable {ENV_CONFIG_PATH}")
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.exists() else None


def _explicit_path(text: str, named_by: str) -> Path:
    """The named file, which must exist.  The path rules are looked up only when it does not
    (so `ctl` need not import them): anything they refuse, stat() or pathlib refuses too."""
    if not text.strip():
        raise ConfigError(f"{named_by} is empty; give the path of a TOML config file")
    try:
        path = Path(text).expanduser()
        os.stat(path)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: pathlib's "~nosuchuser"
        raise ConfigError(_unusable_path(text, named_by, exc)) from None
    return path


def _unusable_path(text: str, named_by: str, exc: Exception) -> str:
    """Why a named config file cannot be used: in the path rules' words when it breaks one."""
    from appliance.settings.path_rules import check_path
    from appliance.settings.display import show

    problem = check_path(text)
    if problem:
        return f"config file {show(text, hidden=False)} (named by {named_by}) {problem}"
    path = Path(text).expanduser()
    if isinstance(exc, FileNotFoundError):
        return f"config file {path} (named by {named_by}) does not exist"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return f"cannot read config file {path} (named by {named_by}): {reason}"


def _is_devnull(path: Path) -> bool:
    """`--config /dev/null` is the usual way to say "no file": it reads as empty."""
    try:
        return os.path.samefile(path, os.devnull)
    except (OSError, ValueError):
        return False


def read_config_text(path: Path) -> str:
    """The config file's text, read only as a regular file of at most CONFIG_MAX_BYTES.

    Raises ConfigError (one line) when the file is refused or unreadable or not UTF-8.
    """
    from appliance.atomicfile import FileRefused, read_regular_file

    if _is_devnull(path):
        return ""
    try:
        data = read_regular_file(path, CONFIG_MAX_BYTES)
    except FileRefused as exc:
        raise ConfigError(f"config file {path} {exc.problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid UTF-8 text") from None


def parse_config_text(path: Path, text: str) -> dict[str, Any]:
    """The config file's text as TOML; ConfigError names the file and the first problem."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error in {path}: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} nests tables or arrays too deeply to read; a config needs no nesting"
        ) from None
    except MemoryError:
        raise ConfigError(f"config file {path} is too big to parse on this machine") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise ConfigError(f"TOML value error in {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- the socket for ctl


def ctl_socket_setting(
    cli_path: str | None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
) -> tuple[str, list[str]]:
    """`[control] socket` for `ctl`, without loading the config: (value, problems met).

    The layers are the loader's, highest first: `--set` (the last one first), then the
    environment, then the file; "" (the default socket) when none sets it.  An invalid
    value, or a file that cannot be read or parsed, is a problem and the next layer is
    asked.  Nothing else in the config is looked at: those mistakes are for the daemon and
    `appliance config check` to report, not a reason to hide the daemon's state.
    """
    problems: list[str] = []
    try:
        for origin, raw, typed in _socket_candidates(cli_path, overrides, env):
            value, problem = _checked_socket(raw, origin, typed=typed)
            if problem is None:
                return value, problems
            problems.append(problem)
    except ConfigError as exc:  # the file is the lowest layer: what is left is the default
        problems.append(str(exc))
    return "", problems


def _socket_candidates(
    cli_path: str | None, overrides: Sequence[str], env: Mapping[str, str]
) -> Iterator[tuple[str, Any, bool]]:
    """(origin, raw value, came typed from TOML) per layer that sets the socket, highest first.

    The file is found, read and parsed only when no higher layer gave a valid value, and
    parsed only when its text could set the key at all.
    """
    for item in reversed(overrides):
        name, sep, raw = item.partition("=")
        if sep and name.strip() == SOCKET_SETTING:
            yield "from --set", raw, False
    if SOCKET_ENV in env:
        yield f"from environment variable {SOCKET_ENV}", env[SOCKET_ENV], False
    path = find_config_path(cli_path, env)
    if path is None:
        return
    text = read_config_text(path)
    section, _, key = SOCKET_SETTING.partition(".")
    if not _may_name(text, key):
        return
    table = parse_config_text(path, text).get(section)
    if isinstance(table, dict) and key in table:
        yield f"in {path}", table[key], True


def _may_name(text: str, key: str) -> bool:
    """Whether TOML `text` could hold `key`: spelled out, or built from \\u escapes in a quoted key."""
    return key in text or "\\u" in text or "\\U" in text


def _checked_socket(raw: Any, origin: str, *, typed: bool) -> tuple[str, str | None]:
    """The value after the setting's own conversion and checks, or the loader's line for its problem."""
    from appliance.settings.path_rules import check_socket_path

    if isinstance(raw, str) and check_socket_path(raw) is None:
        return raw, None  # the setting's only rule (a unit test keeps it so): no need to load every spec
    from appliance.settings.display import show
    from appliance.settings.fields import constraint_problem, convert_text, convert_typed, sections

    section, _, key = SOCKET_SETTING.partition(".")
    spec = sections()[section][1][key]
    try:
        value = convert_typed(spec, raw) if typed else convert_text(spec, raw)
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        value, problem = constraint_problem(spec, value)
    if problem is None:
        return value, None
    return "", f"invalid {spec.dotted} = {show(raw, hidden=spec.secret)} {origin}: {problem}"
