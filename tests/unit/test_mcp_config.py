"""`[mcp]` and `[[mcp.servers]]`: what is accepted, and the one-line errors for the rest."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance.mcp.config import McpServer, McpSettings, load_token, parse_mcp_table, url_problem
from appliance.settings.errors import ConfigError

TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-7c4f1a9e.signature"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "home-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def parse(text: str) -> McpSettings:
    return parse_mcp_table(tomllib.loads(text).get("mcp"))


def refused(table: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_mcp_table(table)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_home_assistant_server_and_a_stdio_server(token_file: Path) -> None:
    settings = parse(f"""
[mcp]
call_timeout_s = 8
non_blocking_timeout_s = 300
retry_s = 30

[[mcp.servers]]
name = "home"
url = "http://homeassistant.local:8123/api/mcp"
token_file = "{token_file}"
include = ["Hass*", "GetLiveContext"]
exclude = ["HassCancelAllTimers"]
non_blocking = ["*_routine"]

[[mcp.servers]]
name = "notes"
command = "/usr/local/bin/notes-mcp"
args = ["--db", "/var/lib/notes.db"]
""")
    home, notes = settings.servers
    assert home == McpServer(name="home", url="http://homeassistant.local:8123/api/mcp", token_file=str(token_file),
                             include=("Hass*", "GetLiveContext"), exclude=("HassCancelAllTimers",),
                             non_blocking=("*_routine",))
    assert (home.transport, notes.transport) == ("http", "stdio")
    assert notes.args == ("--db", "/var/lib/notes.db") and notes.target == "notes-mcp"
    assert (settings.call_timeout_s, settings.list_timeout_s, settings.retry_s) == (8.0, 5.0, 30.0)
    assert settings.non_blocking_timeout_s == 300.0
    assert home.slow("morning_routine") and not home.slow("HassTurnOn") and not notes.slow("morning_routine")


def test_no_table_means_no_servers() -> None:
    assert parse_mcp_table(None) == McpSettings() == parse_mcp_table({})
    assert McpSettings().call_timeout_s == 10.0 and McpSettings().retry_s == 60.0
    assert McpSettings().non_blocking_timeout_s == 120.0  # a slow scene may take minutes, not forever


def test_include_and_exclude_are_globs_over_tool_names() -> None:
    server = McpServer(name="home", url="http://127.0.0.1/", include=("Hass*", "GetLiveContext"), exclude=("*Timer*",))
    assert server.wants("HassTurnOn") and server.wants("GetLiveContext")
    assert not server.wants("HassStartTimer")  # excluded wins
    assert not server.wants("todo_get_items")  # not included
    assert McpServer(name="all", command="x").wants("anything")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8123/api/mcp", "http://localhost/api/mcp", "http://192.168.1.20:8123/api/mcp",
    "http://10.0.0.5/api/mcp", "http://[fd00::5]:8123/api/mcp", "http://169.254.7.1/api/mcp",
    "http://homeassistant.local:8123/api/mcp", "http://homeassistant:8123/api/mcp", "http://ha.home.arpa/api/mcp",
    "https://ha.example.com/api/mcp", "https://203.0.113.9/api/mcp",
])
def test_urls_that_are_accepted(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(("url", "words"), [
    ("http://ha.example.com/api/mcp", "in clear"),
    ("http://93.184.216.34:8123/api/mcp", "in clear"),
    ("ws://192.168.1.20/api/mcp", "http:// or https://"),
    ("homeassistant.local:8123", "http:// or https://"),
    ("https:///api/mcp", "must name a host"),
    ("http://user:pw@192.168.1.20/api/mcp", "user name or password"),
    ("http://192.168.1.20:99999/api/mcp", "port"),
])
def test_urls_that_are_refused(url: str, words: str) -> None:
    message = refused({"servers": [{"name": "home", "url": url}]})
    assert message.startswith("mcp.servers[0].url ") and words in message


@pytest.mark.parametrize(("server", "key", "words"), [
    ({}, "name", "is missing"),
    ({"name": "Home", "url": "http://127.0.0.1/"}, "name", "a-z, 0-9 and _"),
    ({"name": "1st", "url": "http://127.0.0.1/"}, "name", "starting with a letter"),
    ({"name": "my-home", "url": "http://127.0.0.1/"}, "name", "a-z, 0-9 and _"),
    ({"name": 3, "url": "http://127.0.0.1/"}, "name", "a-z"),
    ({"name": "home"}, "", "give url"),
    ({"name": "home", "url": "http://127.0.0.1/", "command": "x"}, "", "has both"),
    ({"name": "home", "url": 8123}, "url", "must be a string"),
    ({"name": "home", "command": "x", "token_file": "/t"}, "token_file", "only for a url server"),
    ({"name": "home", "url": "http://127.0.0.1/", "args": ["x"]}, "args", "only for a server started by command"),
    ({"name": "home", "command": "x", "args": "--db x"}, "args", "list of strings"),
    ({"name": "home", "command": "x", "args": [1]}, "args", "list of strings"),
    ({"name": "home", "command": "x", "include": "Hass*"}, "include", "list of strings"),
    ({"name": "home", "command": "x", "non_blocking": "script_*"}, "non_blocking", "list of strings"),
    ({"name": "home", "command": "x", "non_blocking": [""]}, "non_blocking[0]", "is empty"),
    ({"name": "home", "command": "x", "exclude": [" "]}, "exclude[0]", "is empty"),
    ({"name": "home", "command": "x", "colour": "red"}, "'colour'", "is not a setting"),
])
def test_bad_server_entries_name_their_key(server: dict, key: str, words: str) -> None:
    message = refused({"servers": [{"name": "ok", "command": "x"}, server]})
    prefix = f"mcp.servers[1].{key}" if key else "mcp.servers[1] "
    assert message.startswith(prefix), message
    assert words in message


def test_names_must_be_unique() -> None:
    message = refused({"servers": [{"name": "home", "command": "a"}, {"name": "home", "command": "b"}]})
    assert message.startswith("mcp.servers[1].name 'home' is used twice")


@pytest.mark.parametrize(("table", "words"), [
    ({"servers": {"name": "home"}}, "array of tables"),
    ({"servers": ["home"]}, "array of tables"),
    ({"call_timeout_s": 0}, "from 0.1 to 600"),
    ({"retry_s": 0.5}, "from 1 to 3600"),
    ({"list_timeout_s": True}, "number of seconds"),
    ({"list_timeout_s": "5"}, "number of seconds"),
    ({"call_timeout_s": float("nan")}, "number of seconds"),
    ({"timeout": 5}, "is not a setting"),
    ({"servers": [{"name": f"s{i}", "command": "x"} for i in range(17)]}, "at most 16"),
])
def test_bad_mcp_settings(table: dict, words: str) -> None:
    message = refused(table)
    assert message.startswith("mcp.") and words in message


def test_the_token_file_is_checked_and_read(token_file: Path) -> None:
    entry = {"name": "home", "url": "http://127.0.0.1/", "token_file": str(token_file)}
    settings = parse_mcp_table({"servers": [entry]})
    token = load_token(settings.servers[0].token_file, "mcp.servers[0].token_file")
    assert token.reveal() == TOKEN
    assert TOKEN not in repr(token) and TOKEN not in f"{token}"


def _token_error(path: str) -> str:
    message = refused({"servers": [{"name": "home", "url": "http://127.0.0.1/", "token_file": path}]})
    assert message.startswith("mcp.servers[0].token_file")
    assert TOKEN not in message  # whatever went wrong, the token is never in the message
    return message


def test_a_token_file_others_can_read_is_refused_with_the_fix(token_file: Path) -> None:
    token_file.chmod(0o644)
    message = _token_error(str(token_file))
    assert f"'{token_file}' has mode 644" in message and f"chmod 600 {token_file}" in message
    deep = token_file.parent / ("a-long-folder-name-" * 6) / "home-token"  # a path is never cut short
    deep.parent.mkdir()
    deep.write_text(TOKEN + "\n")
    deep.chmod(0o644)
    assert f"'{deep}' has mode 644" in _token_error(str(deep))
    token_file.chmod(0o400)
    _ok = parse_mcp_table({"servers": [{"name": "home", "url": "http://127.0.0.1/", "token_file": str(token_file)}]})
    assert _ok.servers[0].token_file == str(token_file)


def test_token_file_problems(tmp_path: Path, token_file: Path) -> None:
    assert "does not exist" in _token_error(str(tmp_path / "missing"))
    assert "directory" in _token_error(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "FIFO" in _token_error(str(fifo))  # and it did not block waiting for a writer
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    assert "is empty" in _token_error(str(empty))
    two = tmp_path / "two"
    two.write_text(f"{TOKEN} {TOKEN}\n")
    two.chmod(0o600)
    assert "only the token" in _token_error(str(two))
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    big.chmod(0o600)
    assert "larger than" in _token_error(str(big))


def test_a_token_pasted_where_its_file_belongs_is_not_echoed() -> None:
    message = _token_error(TOKEN)
    assert "absolute path" in message and "not the token" in message
    assert "absolute path" in _token_error("tokens/home")  # a relative path is refused the same way


def test_the_settings_side_imports_neither_the_sdk_nor_asyncio() -> None:
    """The settings loader imports `config`; the daemon imports `manager` only with servers set."""
    heavy = ("mcp", "httpx2", "pydantic", "anyio", "asyncio", "appliance.tools.registry")
    code = (
        "import sys, appliance.mcp.config, appliance.mcp.schema_map\n"
        f"light = [m for m in sys.modules if m.split('.')[0] in {heavy!r} or m in {heavy!r}]\n"
        "import appliance.mcp.manager\n"
        "sdk = [m for m in sys.modules if m.split('.')[0] in ('mcp', 'httpx2', 'pydantic', 'anyio')]\n"
        "print(light, sdk)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[] []"


def test_with_a_problem_list_every_mistake_is_collected_and_the_rest_kept(token_file: Path) -> None:
    problems: list[str] = []
    settings = parse_mcp_table({
        "retry_s": 0, "call_timeout_s": 20, "timout": 3,
        "servers": [
            {"name": "home", "url": "http://127.0.0.1/", "token_file": str(token_file)},
            {"name": "bad", "url": "ws://127.0.0.1/"},
            {"name": "home", "command": "x"},
            {"name": "desk", "comand": "x"},
            {"name": "notes", "command": "x"},
        ],
    }, problems)
    assert [p.split(" ")[0] for p in problems] == [
        "mcp.'timout'", "mcp.retry_s", "mcp.servers[1].url", "mcp.servers[2].name", "mcp.servers[3].'comand'"]
    assert "did you mean mcp.list_timeout_s?" in problems[0]
    assert "did you mean mcp.servers[3].command?" in problems[4]
    assert [s.name for s in settings.servers] == ["home", "notes"]
    assert (settings.call_timeout_s, settings.retry_s) == (20.0, 60.0)  # the refused one keeps its default
    with pytest.raises(ConfigError) as caught:  # without the list: the first of them, raised
        parse_mcp_table({"retry_s": 0, "timout": 3})
    assert str(caught.value).startswith("mcp.'timout' is not a setting")
