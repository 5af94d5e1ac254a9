"""`[leds] night`: a daily window read by `appliance.hw.night`'s own parser, or empty for never."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.settings.loader import load_config
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.settings.template import config_template


def test_night_is_off_unless_set() -> None:
    assert Config().leds.night == ""
    assert '#night = ""' in config_template()


def test_a_window_across_midnight_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[leds]\nnight = "22:00-07:00"\n')
    assert load_config(str(path), env={}).leds.night == "22:00-07:00"


def test_a_bad_window_is_one_line_saying_what_to_write() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"APPLIANCE_LEDS_NIGHT": "22:00-25:00"})
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "invalid leds.night = '22:00-25:00' from environment variable APPLIANCE_LEDS_NIGHT: "
        'must look like "22:00-07:00" (24-hour HH:MM-HH:MM), or ""'
    )
