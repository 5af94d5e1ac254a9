"""Doctor's checks of the settings themselves: the config's values and the API key.

The rules are the settings package's (`config_problems`, `load_api_key`); these checks
only turn what those say into a verdict with advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from appliance.commands.doctor.machine import CheckContext, endpoint_parts
from appliance.commands.doctor.report import Check, failed, passed, skipped
from appliance.netutil import is_loopback_host
from appliance.settings.keys import load_api_key
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME
from appliance.settings.validate import config_problems

__all__ = ["check_api_key", "check_config"]


async def check_config(ctx: CheckContext) -> Check:
    name = "config"
    cfg = ctx.cfg
    problems = config_problems(cfg)
    if problems:
        return failed(
            name,
            "; ".join(problems),
            f"fix this in {cfg.source} (or wherever the value was set: environment or --set), then run doctor again",
        )
    _scheme, host, _port = endpoint_parts(cfg)
    return passed(name, f"{cfg.source}; endpoint {host}, model {cfg.live.model}")


def _key_source(cfg: Config, environ: Mapping[str, str]) -> tuple[str, Path | None]:
    """Where `load_api_key` took the key from (it tries the same order): a label, and the file if any."""
    if environ.get(API_KEY_ENV, "").strip():
        return f"environment variable {API_KEY_ENV}", None
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    if credentials:
        credential = Path(credentials) / CREDENTIAL_NAME
        if credential.exists():
            return f"systemd credential {credential}", credential
    path = Path(cfg.live.api_key_file).expanduser()
    return f"live.api_key_file {path}", path


async def check_api_key(ctx: CheckContext) -> Check:
    name = "api-key"
    cfg, environ = ctx.cfg, ctx.env.environ
    warnings: list[str] = []
    try:
        key = load_api_key(cfg, env=environ, warn=warnings.append)
    except ConfigError as exc:
        return failed(
            name,
            str(exc),
            f"put the key alone on one line in a mode-600 file named by live.api_key_file "
            f"(or the systemd credential {CREDENTIAL_NAME})",
        )
    _scheme, host, _port = endpoint_parts(cfg)
    if key is None:
        if is_loopback_host(host):
            return skipped(name, f"no key, and the endpoint {host} is on this machine (the daemon runs without one)")
        return failed(
            name,
            "no API key found",
            f"on the Pi run `sudo scripts/install.sh --api-key-file FILE` (the service then gets it as "
            f"the systemd credential gemini-api-key); elsewhere set {API_KEY_ENV}, or put it in a "
            f"chmod-600 file named by live.api_key_file",
        )
    source, path = _key_source(cfg, environ)
    # load_api_key warns about its own key file; a credential file handed over by hand (not by
    # systemd, which makes it private) deserves the same check.
    mode = _file_mode(path) if path is not None else None
    if warnings or (mode is not None and mode & 0o077):
        shown = f"{mode:03o}" if mode is not None else "unknown"
        return failed(name, f"key file {path} can be read by group or others (mode {shown})", f"chmod 600 {path}")
    return passed(name, f"from {source}")


def _file_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None
