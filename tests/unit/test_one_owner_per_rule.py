"""Rules the settings share with other parts are read from one owner, so the two cannot drift."""

from __future__ import annotations

import pytest

from appliance.hw.states import STATES
from appliance.live.endpoint import InsecureEndpointError, check_endpoint, endpoint_problem
from appliance.settings.loader import load_config
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.tools.catalog import ALL_TOOLS
from appliance.tools.names import TOOL_NAMES


def test_the_tools_settings_accept_are_the_registered_tools() -> None:
    assert TOOL_NAMES == tuple(ALL_TOOLS)
    assert all(ALL_TOOLS[name].name == name for name in TOOL_NAMES)
    assert Config().tools.enabled == tuple(ALL_TOOLS)
    every = load_config(env={}, overrides=[f"tools.enabled={','.join(ALL_TOOLS)}"])
    assert every.tools.enabled == tuple(ALL_TOOLS)
    with pytest.raises(ConfigError, match="unknown tool; known tools: " + ", ".join(ALL_TOOLS)):
        load_config(env={}, overrides=["tools.enabled=set_timer,make_coffee"])


def test_the_leds_and_the_settings_know_the_same_states() -> None:
    from appliance.hw import leds

    assert leds.STATES is STATES
    pins = ",".join(f"{state}:{pin}" for pin, state in enumerate(STATES, 2))
    cfg = load_config(env={}, overrides=["leds.kind=per_state", f"leds.state_pins={pins}"])
    assert len(cfg.leds.state_pins) == len(STATES)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ws://192.0.2.1:8765/ws", "in clear"),
        ("https://example.invalid/ws", "ws:// or wss://"),
        ("wss://example.invalid/ws?key=abc", "must not carry a key"),
        ("wss://user:pw@example.invalid/ws", "user name or password"),
    ],
)
def test_the_loader_and_the_session_refuse_the_same_endpoints(url: str, problem: str) -> None:
    assert problem in (endpoint_problem(url) or "")
    with pytest.raises(InsecureEndpointError, match=problem):
        check_endpoint(url)
    with pytest.raises(ConfigError, match=problem):
        load_config(env={}, overrides=[f"live.endpoint={url}"])


def test_local_plain_ws_and_wss_anywhere_pass_both() -> None:
    for url in ("ws://127.0.0.1:8765/ws", "ws://localhost:1/ws", "wss://generativelanguage.googleapis.com/ws/x"):
        assert endpoint_problem(url) is None
        check_endpoint(url)
        assert load_config(env={}, overrides=[f"live.endpoint={url}"]).live.endpoint == url
