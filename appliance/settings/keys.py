"""Find and read the API key: the environment, the systemd credential, or a key file.

The key is wrapped in a `Secret` as soon as it is read, so nothing downstream can print it.
A key file must be a regular file of at most `KEY_FILE_MAX_BYTES` holding one line; one
that others can read still works but draws a warning with the chmod that fixes it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from appliance.settings.checks import check_key_file
from appliance.settings.display import looks_like_credential, show
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME, Secret, read_secret_text

__all__ = ["KEY_FILE_MAX_BYTES", "api_key_source", "load_api_key"]

#: an API key file or credential holds one key; anything bigger is not one
KEY_FILE_MAX_BYTES = 4096


def api_key_source(cfg: Config, *, env: Mapping[str, str] = os.environ) -> str | None:
    """Where `load_api_key` takes the key from, without reading it; None when no source is present."""
    found = _first_source(cfg, env)
    if found is None:
        return None
    kind, credential = found
    if kind == "environment":
        return f"environment variable {API_KEY_ENV}"
    if kind == "credential":
        return f"systemd credential {credential}"
    return f"file {Path(cfg.live.api_key_file).expanduser()} (live.api_key_file)"


def _first_source(cfg: Config, env: Mapping[str, str]) -> tuple[str, Path | None] | None:
    """The first key source present, in the order the key is looked for: ("environment" |
    "credential" | "file", the credential's path)."""
    if env.get(API_KEY_ENV, "").strip():
        return "environment", None
    credentials_dir = env.get("CREDENTIALS_DIRECTORY", "")
    if credentials_dir:
        credential = Path(credentials_dir) / CREDENTIAL_NAME
        if credential.exists():
            return "credential", credential
    if cfg.live.api_key_file:
        return "file", None
    return None


def load_api_key(
    cfg: Config,
    *,
    env: Mapping[str, str] = os.environ,
    warn: Callable[[str], None] | None = None,
) -> Secret | None:
    """Find the API key: `$GEMINI_API_KEY`, the systemd credential, `live.api_key_file`.

    The first source present wins.  Returns None when there is no key at all;
    the caller decides whether that is fatal.
    """
    warn = warn or logging.getLogger(__name__).warning
    found = _first_source(cfg, env)
    if found is None:
        return None
    kind, credential = found
    if kind == "environment":
        return Secret(_checked_key(env[API_KEY_ENV].strip(), f"environment variable {API_KEY_ENV}"))
    if credential is not None:
        return Secret(_read_key_file(credential, f"systemd credential {credential}"))
    return Secret(_read_configured_key_file(cfg, warn))


def _read_configured_key_file(cfg: Config, warn: Callable[[str], None]) -> str:
    where = cfg.origins.get("live.api_key_file", "set in code")
    problem = check_key_file(cfg.live.api_key_file)
    if problem:  # only when the Config was built in code: the loader already refused it
        shown = show(cfg.live.api_key_file, hidden=looks_like_credential(cfg.live.api_key_file))
        raise ConfigError(f"live.api_key_file {shown} ({where}) {problem}")
    path = Path(cfg.live.api_key_file).expanduser()
    label = f"live.api_key_file {show(str(path), hidden=False, limit=None)} ({where})"  # a path is shown whole
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{label} does not exist; create it or clear the setting") from None
    except OSError as exc:
        raise ConfigError(f"{label} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{label} is not a regular file")
    if mode & 0o077:
        warn(
            f"API key file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):03o}); run: chmod 600 {path}"
        )
    return _read_key_file(path, label)


def _read_key_file(path: Path, label: str) -> str:
    return _checked_key(read_secret_text(path, label, KEY_FILE_MAX_BYTES, "the API key"), label)


def _checked_key(key: str, label: str) -> str:
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"{label} must hold only the API key, on one line with no spaces")
    return key
