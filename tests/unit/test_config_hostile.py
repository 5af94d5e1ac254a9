"""Config files and settings that try to crash, hang or exhaust the loader: each ends in one ConfigError line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.settings import fields
from appliance.settings.keys import KEY_FILE_MAX_BYTES, load_api_key
from appliance.settings.loader import load_config
from appliance.settings.paths import CONFIG_MAX_BYTES
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config, LiveConfig


def load_file(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(str(path), env={})


def one_line_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    return message


# --------------------------------------------------------------------------- the file itself


@pytest.mark.parametrize("opener, closer", [("{b=", "}"), ("[", "]")], ids=["inline tables", "arrays"])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path, opener: str, closer: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, "[live]\na = " + opener * 5000 + "1" + closer * 5000 + "\n")
    assert "nests tables or arrays too deeply" in one_line_error(info)


def test_an_integer_with_thousands_of_digits_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, "[live]\ncompression_trigger_tokens = " + "9" * 5000 + "\n")
    message = one_line_error(info)
    assert "config.toml" in message and len(message) < 300


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        load_config(str(fifo), env={})
    assert one_line_error(info) == f"config file {fifo} is a FIFO, not a regular file"


def test_an_endless_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero", env={})
    assert one_line_error(info) == "config file /dev/zero is a character device, not a regular file"


def test_dev_null_still_means_an_empty_config() -> None:
    assert load_config(os.devnull, env={}).live == LiveConfig()


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # Valid TOML all the way through, so only the size can be the reason.
    padding = "# " + "x" * 78 + "\n"
    text = "[live]\n" + padding * (CONFIG_MAX_BYTES // len(padding) + 1)
    assert len(text) > CONFIG_MAX_BYTES
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, text)
    assert one_line_error(info).endswith("config.toml is larger than 256 KiB")


def test_a_file_just_under_the_limit_loads(tmp_path: Path) -> None:
    padding = "# " + "x" * 78 + "\n"
    text = '[live]\nvoice = "Puck"\n' + padding * ((CONFIG_MAX_BYTES - 100) // len(padding))
    assert len(text) <= CONFIG_MAX_BYTES
    assert load_file(tmp_path, text).live.voice == "Puck"


def test_a_config_path_with_an_over_long_name_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/tmp/" + "c" * 300 + ".toml", env={})
    assert "each part of a path can be at most 255 bytes" in one_line_error(info)


# --------------------------------------------------------------------------- numbers


def numeric_specs() -> list[fields.Spec]:
    return [
        spec
        for _section, (_type, specs) in fields.sections().items()
        for spec in specs.values()
        if spec.kind in (int, float)
    ]


@pytest.mark.parametrize("spec", numeric_specs(), ids=lambda spec: spec.dotted)
def test_every_number_in_the_schema_has_both_bounds(spec: fields.Spec) -> None:
    low, high = spec.meta.get("min"), spec.meta.get("max")
    assert low is not None and high is not None, f"{spec.dotted} needs min= and max="
    assert low <= high


@pytest.mark.parametrize("key", ["compression_trigger_tokens", "compression_target_tokens"])
def test_an_absurd_token_count_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, f"[live]\n{key} = 99999999999999999999\n")
    assert f"invalid live.{key} = 99999999999999999999" in one_line_error(info)
    assert "must be between 1 and 1048576" in str(info.value)


def test_led_pins_in_lists_are_range_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, '[leds]\nkind = "rgb"\nrgb_pins = [5, 6, 4000]\n')
    assert "item 4000 must be between 0 and 53" in one_line_error(info)
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, '[leds]\nkind = "per_state"\nstate_pins = ["listening:99999999999"]\n')
    assert "invalid leds.state_pins" in one_line_error(info)


def test_a_huge_number_from_the_environment_is_shown_briefly() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={"APPLIANCE_LIVE_COMPRESSION_TRIGGER_TOKENS": "9" * 2000})
    message = one_line_error(info)
    assert "must be between 1 and 1048576" in message and len(message) < 300


# --------------------------------------------------------------------------- path settings

PATH_KEYS = ["control.socket", "state.dir", "live.api_key_file"]


@pytest.mark.parametrize("key", PATH_KEYS)
def test_a_nul_byte_in_a_path_setting_names_the_key(tmp_path: Path, key: str) -> None:
    section, name = key.split(".")
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path, f'[{section}]\n{name} = "/tmp/a\\u0000b"\n')
    assert one_line_error(info).startswith(f"invalid {key} = ")
    assert "must not contain a NUL byte" in str(info.value)


@pytest.mark.parametrize("key", PATH_KEYS)
def test_an_over_long_name_in_a_path_setting_names_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={}, overrides=[f"{key}=/tmp/{'n' * 256}/x"])
    message = one_line_error(info)
    assert message.startswith(f"invalid {key} = ") and "at most 255 bytes" in message


@pytest.mark.parametrize("key", ["state.dir", "live.api_key_file"])
def test_an_over_long_path_names_the_key(key: str) -> None:
    long_path = "/" + "/".join(["d" * 200] * 25)
    assert len(long_path) > 4096
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={}, overrides=[f"{key}={long_path}"])
    assert f"invalid {key}" in one_line_error(info)
    assert "a path can be at most 4096 bytes" in str(info.value)


def test_a_control_socket_path_over_107_bytes_says_why() -> None:
    path = "/run/" + "s" * 103  # 108 bytes: one too many for sun_path
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={}, overrides=[f"control.socket={path}"])
    message = one_line_error(info)
    assert message.startswith("invalid control.socket") and "at most 107 bytes" in message
    ok = "/run/" + "s" * 102
    assert load_config(os.devnull, env={}, overrides=[f"control.socket={ok}"]).control.socket == ok


def test_a_home_of_a_user_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={}, overrides=["state.dir=~no-such-user-4711/state"])
    assert "there is no user no-such-user-4711" in one_line_error(info)


# --------------------------------------------------------------------------- the API key file


def key_config(path: Path | str) -> Config:
    return Config(live=LiveConfig(api_key_file=str(path)))


def test_a_fifo_as_key_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError) as info:
        load_api_key(key_config(fifo), env={}, warn=lambda _message: None)
    message = one_line_error(info)
    assert message.startswith("live.api_key_file ") and "not a regular file" in message


def test_a_key_file_in_a_deep_folder_is_named_whole(tmp_path: Path) -> None:
    """The owner must find the file to chmod it, so its path is never cut short."""
    path = tmp_path / ("a-long-folder-name-" * 6) / "gemini-key"
    path.parent.mkdir()
    path.write_text("two words\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_api_key(key_config(path), env={}, warn=lambda _message: None)
    assert one_line_error(info).startswith(f"live.api_key_file '{path}' (")


def test_dev_zero_as_key_file_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_api_key(key_config("/dev/zero"), env={}, warn=lambda _message: None)
    assert "not a regular file" in one_line_error(info)


def test_a_key_file_over_the_cap_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "key"
    content = "k" * (KEY_FILE_MAX_BYTES + 1)
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_api_key(key_config(path), env={})
    message = one_line_error(info)
    assert "is larger than 4 KiB" in message and content not in message


def test_a_systemd_credential_is_read_the_same_safe_way(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    os.mkfifo(credentials / "gemini-api-key", 0o400)
    with pytest.raises(ConfigError) as info:
        load_api_key(Config(), env={"CREDENTIALS_DIRECTORY": str(credentials)})
    message = one_line_error(info)
    assert message.startswith("systemd credential ") and "FIFO" in message


def test_a_key_file_path_with_a_nul_byte_built_in_code_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_api_key(key_config("/tmp/k\x00ey"), env={})
    assert "must not contain a NUL byte" in one_line_error(info)


def test_a_good_key_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("a-perfectly-normal-key\n")
    path.chmod(0o600)
    key = load_api_key(key_config(path), env={})
    assert key is not None and key.reveal() == "a-perfectly-normal-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("key", ["audio.input_rate", "audio.output_rate"])
@pytest.mark.parametrize(
    ("rate", "problem"),
    [(3, "or a rate from 8000 to 192000 Hz"), (96001, "is not a usual audio rate")],
)
def test_a_device_rate_the_resampler_cannot_afford_is_refused(key: str, rate: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(os.devnull, env={}, overrides=[f"{key}={rate}"])
    message = one_line_error(info)
    assert message.startswith(f"invalid {key} = {rate} from --set") and problem in message


@pytest.mark.parametrize("rate", [0, 8000, 11025, 44100, 48000, 192000])
def test_usual_device_rates_are_accepted(rate: int) -> None:
    cfg = load_config(os.devnull, env={}, overrides=[f"audio.input_rate={rate}", f"audio.output_rate={rate}"])
    assert (cfg.audio.input_rate, cfg.audio.output_rate) == (rate, rate)
