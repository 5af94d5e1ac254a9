"""Doctor's checks of the way to the service: the endpoint answers, and accepts our key.

`network` stops at a TCP (and TLS) connection, so a DNS, firewall or certificate problem
is told apart from a refused key; `key-accepted` then does one real session setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl

from appliance.commands.doctor.machine import CheckContext, blocking, endpoint_parts, os_error_text
from appliance.commands.doctor.report import Check, failed, passed
from appliance.netutil import is_loopback_host
from appliance.settings.keys import load_api_key
from appliance.settings.errors import ConfigError

__all__ = ["CONNECT_TIMEOUT_S", "DNS_TIMEOUT_S", "SETUP_ROUND_TRIP_S", "check_key_accepted", "check_network"]

#: how long the setup round trip may take, at most (the per-check limit is a little longer)
SETUP_ROUND_TRIP_S = 7.0
DNS_TIMEOUT_S = 4.0
CONNECT_TIMEOUT_S = 4.0


# --------------------------------------------------------------------------- network


async def check_network(ctx: CheckContext) -> Check:
    name = "network"
    env = ctx.env
    scheme, host, port = endpoint_parts(ctx.cfg)
    if not host:
        return failed(name, "the endpoint names no host", "set live.endpoint to a wss:// URL, or leave it empty")
    try:
        infos = await asyncio.wait_for(
            blocking(lambda: env.getaddrinfo(host, port, type=socket.SOCK_STREAM), name="doctor-dns"),
            DNS_TIMEOUT_S,
        )
    except TimeoutError:
        return failed(name, f"looking up {host} took longer than {DNS_TIMEOUT_S:g} s", _dns_advice(host))
    except (OSError, UnicodeError) as exc:
        return failed(name, f"cannot resolve {host}: {os_error_text(exc)}", _dns_advice(host))
    addresses = list(dict.fromkeys((info[0], info[4][0]) for info in infos if info and len(info) >= 5))
    if not addresses:
        return failed(name, f"{host} resolves to no address", _dns_advice(host))

    use_tls = scheme == "wss"
    context = env.ssl_context() if use_tls else None
    failures: list[str] = []
    for _family, address in addresses:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=context, server_hostname=host if use_tls else None),
                CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            failures.append(f"{address}: no answer within {CONNECT_TIMEOUT_S:g} s")
            continue
        except ssl.SSLCertVerificationError as exc:
            return failed(
                name,
                f"TLS to {host}:{port} ({address}): the certificate did not verify ({exc.verify_message or exc.reason})",
                "check the clock (see the clock check: a wrong date makes every certificate look invalid); "
                "if the network intercepts TLS, its certificate must be in the system store",
            )
        except (ssl.SSLError, OSError) as exc:
            failures.append(f"{address}: {os_error_text(exc)}")
            continue
        tls_text = ""
        if use_tls:
            ssl_object = writer.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
            tls_text = f", {version or 'TLS'} handshake done"
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        how = "TLS" if use_tls else "TCP (plain ws://, this machine only)"
        where = host if address == host else f"{host} -> {address}"
        return passed(name, f"{where}; {how} to port {port} connects{tls_text}")
    advice = (
        f"nothing answers at {host}:{port}: start the emulator (appliance emulator) or fix live.endpoint"
        if is_loopback_host(host)
        else f"check the network connection and any firewall between this box and {host} port {port}"
    )
    return failed(name, f"cannot connect to {host}:{port} ({'; '.join(failures)})", advice)


def _dns_advice(host: str) -> str:
    return f"check the network connection and DNS (/etc/resolv.conf; try `getent hosts {host}`)"


# --------------------------------------------------------------------------- key accepted


async def check_key_accepted(ctx: CheckContext) -> Check:
    name = "key-accepted"
    cfg = ctx.cfg
    try:
        key = load_api_key(cfg, env=ctx.env.environ, warn=lambda _message: None)
    except ConfigError as exc:
        return failed(name, f"not tried: no usable API key ({exc})", "see the api-key check")
    _scheme, host, _port = endpoint_parts(cfg)
    if key is None and not is_loopback_host(host):
        return failed(name, "not tried: no API key", "see the api-key check")

    from appliance.live.endpoint import InsecureEndpointError
    from appliance.live.from_config import session_from_config
    from appliance.live.link import LinkChanged, LinkState

    budget = min(cfg.live.setup_timeout_s, SETUP_ROUND_TRIP_S)
    quick = dataclasses.replace(cfg, live=dataclasses.replace(cfg.live, setup_timeout_s=budget))
    try:
        session = session_from_config(quick, key)
    except InsecureEndpointError as exc:
        return failed(name, f"not tried: {exc}", "see the config check")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget + 0.5
    session.start()
    try:
        while session.state not in (LinkState.READY, LinkState.ERROR, LinkState.OFFLINE):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await session.wait_ready(min(remaining, 0.25))
        state = session.state
        reason = session.last_error
        code = next(
            (e.close_code for e in reversed(session.drain_events()) if isinstance(e, LinkChanged) and e.close_code),
            None,
        )
    finally:
        await session.close()

    model = cfg.live.model
    if state is LinkState.READY:
        return passed(name, f"{host} accepted the session setup for {model}")
    if state is LinkState.ERROR:
        shown = f"{code} {reason}" if code else reason
        return failed(name, f"the service refused the session: {shown}", _refusal_advice(reason, model))
    if state is LinkState.OFFLINE:
        return failed(name, f"not reached: {reason or 'connection failed'}", "see the network check")
    return failed(
        name,
        f"no setupComplete from {host} within {budget:g} s" + (f" ({reason})" if reason else ""),
        "the service is slow or unreachable: see the network check, then try again",
    )


def _refusal_advice(reason: str, model: str) -> str:
    text = reason.lower()
    if "api key" in text or "unregistered callers" in text or "permission" in text:
        return (
            "the key was refused: make a new key in Google AI Studio and put it in the key file "
            "(scripts/install.sh --api-key-file FILE replaces it)"
        )
    if "not found" in text or "not supported" in text or "model" in text:
        return f"live.model {model!r} is not available to this key: set live.model to a Live model it can use"
    return "the service refused the configuration: fix the setting the reason names, then run doctor again"
