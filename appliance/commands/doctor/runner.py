"""The checks in their fixed order, and how each is run so that none can stop the others.

Each check runs under its own time limit: one that hangs (a DNS lookup, a busy sound card)
is reported as failed and the rest still run, and one that crashes becomes a failed check
too.  Every verdict passes through a redactor before anyone sees it.  A check about several
things of one kind (the MCP servers) gives one verdict for each, all under its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from appliance.commands.doctor.audio_checks import DEVICE_BUSY_HINT, check_audio_devices, check_microphone
from appliance.commands.doctor.config_checks import check_api_key, check_config
from appliance.commands.doctor.gpio_checks import check_gpio
from appliance.commands.doctor.machine import CheckContext, DoctorEnv
from appliance.commands.doctor.mcp_checks import check_mcp, mcp_time_limit
from appliance.commands.doctor.network_checks import check_key_accepted, check_network
from appliance.commands.doctor.report import Check, failed
from appliance.commands.doctor.system_checks import check_clock, check_disk, check_power
from appliance.commands.doctor_arguments import CHECK_NAMES
from appliance.settings.keys import load_api_key
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.settings.secrets import REDACTED, Secret

__all__ = ["CHECKS", "CHECK_NAMES", "CheckSpec", "quiet_logs", "run_checks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckSpec:
    """A check by name, and what to do when it gives no answer in time."""

    name: str
    run: Callable[[CheckContext], Awaitable[Check | tuple[Check, ...]]]
    on_timeout: str
    #: how long this check may need when that depends on the config; at least the usual limit
    time_limit: Callable[[CheckContext], float] | None = None


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("config", check_config, "report this as a bug"),
    CheckSpec("api-key", check_api_key, "check the disk holding the key file"),
    CheckSpec("clock", check_clock, "timedatectl hangs: check systemd-timedated"),
    CheckSpec("network", check_network, "check the network connection and DNS"),
    CheckSpec("key-accepted", check_key_accepted, "the service is slow or unreachable: see the network check"),
    CheckSpec("mcp", check_mcp, "an MCP server neither answers nor fails: check it and mcp.list_timeout_s",
              mcp_time_limit),
    CheckSpec("audio-devices", check_audio_devices, f"a sound card does not answer; {DEVICE_BUSY_HINT}"),
    CheckSpec("microphone", check_microphone, f"the microphone does not answer; {DEVICE_BUSY_HINT}"),
    CheckSpec("gpio", check_gpio, "the GPIO driver does not answer: reboot, then try again"),
    CheckSpec("power", check_power, "vcgencmd hangs: reboot, then try again"),
    CheckSpec("disk", check_disk, "the disk does not answer: check the SD card and its mount"),
)
# CHECK_NAMES (the --only choices, in this order) is doctor_arguments'; a unit test keeps CHECKS in step.


async def _run_one(spec: CheckSpec, ctx: CheckContext) -> tuple[Check, ...]:
    """Run one check under its time limit; a crash or a hang becomes a failed check."""
    limit = ctx.env.check_timeout_s
    if spec.time_limit is not None:
        limit = max(limit, spec.time_limit(ctx))
    task = asyncio.ensure_future(spec.run(ctx))
    done, _pending = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()  # not awaited: a check stuck in a thread must not hold doctor up
        return (failed(spec.name, f"no result within {limit:g} s", spec.on_timeout),)
    try:
        result = task.result()
    except Exception as exc:  # noqa: BLE001 - a bug in one check must not stop the others
        log.debug("check %s crashed", spec.name, exc_info=True)
        text = " ".join(str(exc).split()) or type(exc).__name__
        return (failed(spec.name, f"the check itself failed: {type(exc).__name__}: {text}",
                       "report this as a bug, with the line above"),)
    return (result,) if isinstance(result, Check) else tuple(result)


async def run_checks(
    cfg: Config,
    env: DoctorEnv | None = None,
    *,
    only: Sequence[str] = (),
    on_result: Callable[[Check], None] | None = None,
    keyboard: bool = False,
) -> list[Check]:
    """Run the checks (all, or those named in `only`) in order; `on_result` sees each as it finishes.

    `keyboard` is `doctor --keyboard`: the GPIO button is left out of the gpio check.
    """
    unknown = [name for name in only if name not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r}; checks: {', '.join(CHECK_NAMES)}")
    ctx = CheckContext(cfg, env or DoctorEnv(), keyboard=keyboard)
    redact = _redactor(cfg, ctx.env.environ)
    results = []
    for spec in CHECKS:
        if only and spec.name not in only:
            continue
        for result in await _run_one(spec, ctx):
            result = dataclasses.replace(result, detail=redact(result.detail), advice=redact(result.advice))
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _redactor(cfg: Config, environ: Mapping[str, str]) -> Callable[[str], str]:
    """Second line of defence: no check's text may carry the key, whatever went wrong."""
    try:
        key: Secret | None = load_api_key(cfg, env=environ, warn=lambda _message: None)
    except ConfigError:
        key = None
    value = key.reveal() if key is not None else ""
    if len(value) < 4:
        return lambda text: text
    return lambda text: text.replace(value, REDACTED)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Doctor reports every problem itself; the modules it borrows would log them a second time.

    Left alone at debug level, where the extra detail is what was asked for.
    """
    logger = logging.getLogger("appliance")
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)
