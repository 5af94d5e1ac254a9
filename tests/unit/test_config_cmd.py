"""`appliance config show | check | template` as the owner sees them over SSH."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest

from appliance.commands.config_cmd import FULL_LIST_HINT, check_command, config_command, show_command
from appliance.settings import paths
from appliance.settings.errors import ConfigError
from appliance.mcp.config import McpServer
from appliance.settings.fields import sections, setting_names
from appliance.settings.loader import collect_config, load_config
from appliance.settings.schema import Config
from appliance.settings.template import config_template

# built in two parts so that no file holds something shaped like a real key
FAKE_KEY = "AI" + "zaSyFAKEfakeFAKEfake0123456789abcdefg"

MANY_MISTAKES = """\
[live]
voice = "Koer"
modle = "gemini-3.8-live"
setup_timeout_s = 0
[audio]
volume = 700
[lvie]
model = "x"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def check(path: Path | None, *overrides: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = check_command(str(path) if path else None, overrides, env=env or {}, out=out)
    return code, out.getvalue().splitlines()


def show_lines(path: Path | None, *overrides: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = show_command(str(path) if path else None, overrides, env=env or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own /etc/appliance/config.toml never leaks into a test."""
    monkeypatch.setattr(paths, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent" / "config.toml"))


# --------------------------------------------------------------------------- collecting every problem


def test_every_mistake_is_listed_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    collected = collect_config(str(path), env={})
    assert collected.config is None and collected.path == path
    assert [re.match(r"\S+ \S+ \S+", p).group() for p in collected.problems] == [
        "invalid live.voice =",
        "unknown key live.modle",
        "invalid live.setup_timeout_s =",
        "invalid audio.volume =",
        "unknown section [lvie]",
    ]
    assert "did you mean Kore?" in collected.problems[0]
    assert "did you mean live.model?" in collected.problems[1]
    assert "did you mean [live]?" in collected.problems[4]


@pytest.mark.parametrize("text", [MANY_MISTAKES, "[live]\nsetup_timeout_s = 'soon'\n", "top = 1\n", "[live\n",
                                  "[live]\ncompression_target_tokens = 30000\n"])
def test_the_daemon_refuses_with_exactly_the_first_problem_the_check_lists(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert str(info.value) == collect_config(str(path), env={}).problems[0]


def test_the_environment_and_set_are_checked_too_each_naming_where(tmp_path: Path) -> None:
    path = write(tmp_path, "[audio]\nvolume = 700\n")
    env = {"APPLIANCE_VAD_AGGRESSIVENESS": "9", "APPLIANCE_LIVE_VOISE": "Kore"}
    problems = collect_config(str(path), env=env, overrides=["log.level=loud", "nonsense"]).problems
    assert [p.split(": ")[0].split("; ")[0] for p in problems] == [
        f"invalid audio.volume = 700 in {path}",
        "unknown key live.voise from environment variable APPLIANCE_LIVE_VOISE",
        "invalid vad.aggressiveness = 9 from environment variable APPLIANCE_VAD_AGGRESSIVENESS",
        "invalid log.level = 'loud' from --set",
        "--set expects section.key=value, like live.model=NAME (got 'nonsense')",
    ]


def test_a_rule_across_keys_is_not_judged_on_the_default_standing_in_for_a_refused_value(tmp_path: Path) -> None:
    # the target is refused; its default (12800) must not then be reported as above the trigger
    path = write(tmp_path, "[live]\ncompression_trigger_tokens = 1000\ncompression_target_tokens = 99999999\n")
    problems = collect_config(str(path), env={}).problems
    assert len(problems) == 1 and "must be between 1 and 1048576" in problems[0]


def test_a_valid_config_loads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nvoice = "puck"\n[audio]\nvolume = 40\n')
    collected = collect_config(str(path), env={"APPLIANCE_LOG_LEVEL": "debug"})
    assert collected.problems == collected.clashes == collected.warnings == ()
    assert collected.config == load_config(str(path), env={"APPLIANCE_LOG_LEVEL": "debug"})
    assert (collected.config.live.voice, collected.config.audio.volume, collected.config.log.level) == (
        "Puck", 40, "debug")


MCP_MISTAKES = """\
[live]
voice = "Koer"
[mcp]
retry_s = 0
[[mcp.servers]]
name = "home"
url = "http://homeassistant.local:8123/api/mcp"
token_file = "/nowhere/home-token"
[[mcp.servers]]
name = "notes"
comand = "/usr/local/bin/notes-mcp"
[[mcp.servers]]
name = "desk"
command = "/usr/local/bin/desk-mcp"
"""


def test_mcp_mistakes_are_listed_with_the_others_each_naming_its_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, MCP_MISTAKES)
    collected = collect_config(str(path), env={}, overrides=["mcp.servers=home", "mcp.call_timeout_s=soon"])
    assert collected.config is None
    assert [p.split(" ")[0] for p in collected.problems] == [
        "invalid", "mcp.retry_s", "mcp.servers[0].token_file", "mcp.servers[1].'comand'", "mcp.servers",
        "mcp.call_timeout_s"]
    _voice, retry, token, typo, servers, timeout = collected.problems
    assert retry == f"mcp.retry_s is 0; it must be from 1 to 3600 seconds (in {path})"
    assert "does not exist" in token and token.endswith(f"(in {path})")
    assert "did you mean mcp.servers[1].command?" in typo
    assert servers.startswith("mcp.servers from --set cannot be set there") and "config file" in servers
    assert timeout == "mcp.call_timeout_s must be a number of seconds, not 'soon' (from --set)"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert str(info.value) == collect_config(str(path), env={}).problems[0]


def test_the_daemon_refuses_an_mcp_mistake_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[mcp.servers]]\nname = "home"\nurl = "http://ha.example.com/api/mcp"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert str(info.value).startswith("mcp.servers[0].url 'http://ha.example.com/api/mcp' uses plain http://")
    assert str(info.value).endswith(f"(in {path})")


def test_mcp_timings_come_from_the_file_the_environment_and_set_the_servers_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[mcp]\nretry_s = 30\ncall_timeout_s = 5\n[[mcp.servers]]\nname = "desk"\n'
                           'command = "/usr/local/bin/desk-mcp"\n')
    cfg = load_config(str(path), env={"APPLIANCE_MCP_LIST_TIMEOUT_S": "8"}, overrides=["mcp.call_timeout_s=20"])
    assert cfg.mcp.servers == (McpServer(name="desk", command="/usr/local/bin/desk-mcp"),)
    assert (cfg.mcp.call_timeout_s, cfg.mcp.list_timeout_s, cfg.mcp.retry_s) == (20.0, 8.0, 30.0)
    assert cfg.origins["mcp.call_timeout_s"] == "from --set"
    assert cfg.origins["mcp.list_timeout_s"] == "from environment variable APPLIANCE_MCP_LIST_TIMEOUT_S"
    assert cfg.origins["mcp.servers"] == cfg.origins["mcp.retry_s"] == f"in {path}"


def test_a_mistyped_mcp_name_gets_a_guess_wherever_it_was_written(tmp_path: Path) -> None:
    path = write(tmp_path, "[mpc]\nretry_s = 3\n")
    problems = collect_config(str(path), env={"APPLIANCE_MCP_RETRYS": "4"}, overrides=["mcp.call_timout_s=3"]).problems
    assert problems == (
        f"unknown section [mpc] in {path}; did you mean [mcp]?",
        "unknown key mcp.retrys from environment variable APPLIANCE_MCP_RETRYS; did you mean APPLIANCE_MCP_RETRY_S?",
        "unknown key mcp.call_timout_s from --set; did you mean mcp.call_timeout_s?",
    )


def test_show_lists_each_mcp_server_with_its_token_file_never_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "home-token"
    token_file.write_text("tok-4f1d9a7c-never-shown\n")
    token_file.chmod(0o600)
    path = write(tmp_path, f"""\
[[mcp.servers]]
name = "home"
url = "http://homeassistant.local:8123/api/mcp"
token_file = "{token_file}"
include = ["Hass*"]
[[mcp.servers]]
name = "notes"
command = "/usr/local/bin/notes-mcp"
args = ["--db", "/var/lib/notes.db"]
""")
    code, out, _err = show_lines(path, "mcp.retry_s=30")
    lines = out.splitlines()
    assert code == 0 and "tok-4f1d9a7c" not in out
    assert (f"mcp.servers[0] = name 'home', url 'http://homeassistant.local:8123/api/mcp', token_file "
            f"'{token_file}', include ['Hass*']  (file {path})") in lines
    assert (f"mcp.servers[1] = name 'notes', command '/usr/local/bin/notes-mcp', args ['--db', "
            f"'/var/lib/notes.db']  (file {path})") in lines
    assert "mcp.retry_s = 30.0  (--set)" in lines and "mcp.call_timeout_s = 10.0  (default)" in lines
    _code, out, _err = show_lines(None)
    assert "mcp.servers = none  (default)" in out.splitlines()


# --------------------------------------------------------------------------- config check


def test_check_prints_one_line_per_mistake_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    code, lines = check(path)
    assert code == 1
    assert lines[:-1] == list(collect_config(str(path), env={}).problems)
    assert lines[-1] == f"5 mistakes (config file {path})"


def test_check_of_a_clean_file_says_so_with_the_path_and_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nvoice = "Puck"\n')
    assert check(path) == (0, [f"no mistakes: config file {path}"])


def test_check_without_any_file_checks_the_other_layers(tmp_path: Path) -> None:
    assert check(None) == (0, [f"no mistakes: no config file ({paths.DEFAULT_CONFIG_PATH} does not exist "
                               "and none is named)"])
    assert check(None, "audio.volume=101") == (
        1, ["invalid audio.volume = 101 from --set: must be between 0 and 100", "1 mistake"])


def test_check_reads_the_configured_file_when_none_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "[audio]\nvolume = 700\n")
    code, lines = check(None, env={"APPLIANCE_CONFIG": str(path)})
    assert code == 1 and lines[-1] == f"1 mistake (config file {path})"


def test_check_names_a_missing_file_as_its_mistake(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert check(missing) == (1, [f"config file {missing} (named by --config) does not exist", "1 mistake"])


def test_a_pin_used_twice_is_a_mistake_though_each_key_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, '[leds]\nkind = "pwm"\npin = 17\n')
    code, lines = check(path)
    assert code == 1 and lines[0] == "GPIO17 is both button.pin and in leds.pin; give the LED another pin"


def test_an_unknown_model_is_a_warning_not_a_mistake(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nmodel = "gemini-3.8-lvie"\n')
    code, lines = check(path)
    assert code == 0
    assert lines[0].startswith("warning: live.model = 'gemini-3.8-lvie': ") and "did you mean gemini-3.8-live?" in lines[0]
    assert lines[1] == f"no mistakes: config file {path} (1 warning)"


def test_check_escapes_what_the_file_says(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\n"mod\\u001b[2Jle" = 1\nvoice = "\\u001b]0;owned\\u0007"\n')
    code, lines = check(path)
    text = "\n".join(lines)
    assert code == 1 and "\x1b" not in text and "\x07" not in text
    assert "unknown key live.mod\\x1b[2Jle" in lines[0]


def test_check_never_shows_a_key_pasted_into_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f'[live]\napi_key = "{FAKE_KEY}"\napi_key_file = "{FAKE_KEY}"\n')
    code, lines = check(path)
    assert code == 1 and FAKE_KEY not in "\n".join(lines)
    assert "the API key never goes in the config" in lines[0]


# --------------------------------------------------------------------------- config show


def test_show_lists_every_setting_with_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nvoice = "Puck"\n')
    env = {"APPLIANCE_AUDIO_VOLUME": "40"}
    code, out, err = show_lines(path, "log.level=debug", env=env)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"# config file {path}"
    assert f"live.voice = 'Puck'  (file {path})" in lines
    assert "audio.volume = 40  (environment APPLIANCE_AUDIO_VOLUME)" in lines
    assert "log.level = 'debug'  (--set)" in lines
    assert "live.model = 'gemini-3.8-live'  (default)" in lines
    shown = {line.split(" = ")[0] for line in lines if " = " in line}
    every = {spec.dotted for _type, specs in sections().values() for spec in specs.values()}
    assert every <= shown


def test_show_groups_the_settings_by_section(tmp_path: Path) -> None:
    _code, out, _err = show_lines(None)
    groups = [block.splitlines() for block in out.split("\n\n")[1:]]
    for block in groups:
        assert len({line.split(".")[0] for line in block if not line.startswith(("#", "api key"))}) <= 1


def test_show_never_shows_the_api_key_only_whether_and_where(tmp_path: Path) -> None:
    _code, out, _err = show_lines(None, env={"GEMINI_API_KEY": FAKE_KEY})
    assert FAKE_KEY not in out
    assert "api key = set (hidden)  (environment variable GEMINI_API_KEY)" in out.splitlines()
    _code, out, _err = show_lines(None)
    assert any(line.startswith("api key = not set  (") for line in out.splitlines())


def test_show_reports_a_key_file_it_cannot_use_without_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{FAKE_KEY} extra\n")
    key_file.chmod(0o600)
    _code, out, _err = show_lines(None, f"live.api_key_file={key_file}")
    [line] = [line for line in out.splitlines() if line.startswith("api key = ")]
    assert line.startswith("api key = not usable  (") and "one line with no spaces" in line
    assert FAKE_KEY not in out


def test_a_setting_marked_secret_shows_only_whether_it_is_set() -> None:
    from appliance.commands.config_cmd import _setting_line
    from appliance.settings.fields import Spec

    secret = Spec("live", "token_file", str, False, {"secret": True})
    assert _setting_line(secret, "hunter2", Config()) == "live.token_file = set (hidden)  (default)"
    assert _setting_line(secret, "", Config()) == "live.token_file = not set  (default)"


def test_show_refuses_a_broken_config_with_the_daemons_line_and_a_pointer(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    code, out, err = show_lines(path)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert (code, out) == (2, "")
    assert err == f"appliance: {info.value}; {FULL_LIST_HINT}\n"


# --------------------------------------------------------------------------- config template


def test_the_template_parses_and_loads_as_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, config_template())
    cfg = load_config(str(path), env={})
    assert cfg == Config(source=str(path)) and dict(cfg.origins) == {}


def test_every_line_of_the_template_uncommented_still_loads_as_the_defaults(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^#(\w+ = )", r"\1", config_template())
    path = write(tmp_path, text)
    cfg = load_config(str(path), env={})
    assert cfg == Config(source=str(path))
    # every setting has its line; the servers are an example in "# " comments
    assert set(cfg.origins) == set(setting_names()) - {"mcp.servers"}


def test_the_templates_home_assistant_example_is_a_server_entry_that_loads(tmp_path: Path) -> None:
    token_file = tmp_path / "home-token"
    token_file.write_text("tok-example\n")
    token_file.chmod(0o600)
    example = re.sub(r"(?m)^# ((\[\[mcp\.servers\]\])|(\w+ = ))", r"\1", config_template())
    assert example.count("[[mcp.servers]]\nname = ") == 1
    path = write(tmp_path, example.replace("/etc/appliance/home-token", str(token_file)))
    [home] = load_config(str(path), env={}).mcp.servers
    assert (home.name, home.url, home.token_file) == ("home", "http://homeassistant.local:8123/api/mcp",
                                                      str(token_file))


def test_the_template_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(config_action="template", config=None, overrides=[])
    assert config_command(args, env={}) == 0
    assert capsys.readouterr().out == config_template()
