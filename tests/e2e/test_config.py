"""Config loading, API key lookup and secret redaction, as a user would see them."""

from __future__ import annotations

import dataclasses

import copy
import io
import logging
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance.settings import fields, paths
from appliance.live.endpoint import endpoint_url
from appliance.settings.keys import load_api_key
from appliance.settings.loader import load_config
from appliance.settings.paths import find_config_path
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config, LiveConfig
from appliance.settings.template import config_template
from appliance.settings.secrets import RedactingFilter, Secret, install_redaction

# built in two parts so that no file holds something shaped like a real key
FAKE_KEY = "AI" + "zaSyFAKEfakeFAKEfake0123456789abcdefg"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("in_file", "in_env", "in_set", "expected", "origin_start"),
    [
        (False, False, False, "gemini-3.8-live", None),
        (True, False, False, "from-file", "in "),
        (True, True, False, "from-env", "from environment variable APPLIANCE_LIVE_MODEL"),
        (True, True, True, "from-set", "from --set"),
        (False, True, True, "from-set", "from --set"),
        (True, False, True, "from-set", "from --set"),
    ],
)
def test_precedence_defaults_file_env_set(
    tmp_path: Path, in_file: bool, in_env: bool, in_set: bool, expected: str, origin_start: str | None
) -> None:
    path = write(tmp_path, '[live]\nmodel = "from-file"\n' if in_file else "")
    env = {"APPLIANCE_LIVE_MODEL": "from-env"} if in_env else {}
    overrides = ["live.model=from-set"] if in_set else []

    cfg = load_config(str(path), env=env, overrides=overrides)

    assert cfg.live.model == expected
    assert cfg.source == str(path)
    if origin_start is None:
        assert "live.model" not in cfg.origins
    else:
        assert cfg.origins["live.model"].startswith(origin_start)


def test_layers_merge_per_key_not_per_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nvoice = "Puck"\nsetup_timeout_s = 3\n[log]\nlevel = "debug"\n')
    cfg = load_config(
        str(path),
        env={"APPLIANCE_LIVE_SETUP_TIMEOUT_S": "5"},
        overrides=["live.reply_timeout_s=7.5"],
    )
    assert (cfg.live.voice, cfg.live.setup_timeout_s, cfg.live.reply_timeout_s) == ("Puck", 5.0, 7.5)
    assert cfg.log.level == "debug"
    assert cfg.live.model == LiveConfig().model


def test_no_file_anywhere_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    cfg = load_config(env={})
    assert cfg.source == "defaults"
    assert (cfg.live, cfg.log) == (Config().live, Config().log)


def test_config_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = write(tmp_path, "", "default.toml")
    from_env = write(tmp_path, "", "env.toml")
    from_flag = write(tmp_path, "", "flag.toml")
    monkeypatch.setattr(paths, "DEFAULT_CONFIG_PATH", str(default))
    env = {"APPLIANCE_CONFIG": str(from_env)}

    assert find_config_path(str(from_flag), env) == from_flag
    assert find_config_path(None, env) == from_env
    assert find_config_path(None, {}) == default
    default.unlink()
    assert find_config_path(None, {}) is None


@pytest.mark.parametrize(
    ("use_flag", "named_by"),
    [(True, "--config"), (False, "environment variable APPLIANCE_CONFIG")],
)
def test_missing_explicit_config_file_is_an_error(tmp_path: Path, use_flag: bool, named_by: str) -> None:
    missing = tmp_path / "nope.toml"
    cli = str(missing) if use_flag else None
    env = {} if use_flag else {"APPLIANCE_CONFIG": str(missing)}
    with pytest.raises(ConfigError) as info:
        load_config(cli, env=env)
    assert str(info.value) == f"config file {missing} (named by {named_by}) does not exist"


# ----------------------------------------------------------------------------- errors


ERROR_CASES = [
    # id, file text, env, --set, expected fragments (FILE is replaced by the file path)
    ("unknown key", "[live]\nmodle = 'x'\n", {}, [],
     ["unknown key live.modle in FILE; did you mean live.model?"]),
    ("unknown key no match", "[live]\nzzz = 1\n", {}, [],
     ["unknown key live.zzz in FILE; known keys in [live]: endpoint, api_version"]),
    ("unknown section", "[lvie]\nmodel = 'x'\n", {}, [],
     ["unknown section [lvie] in FILE; did you mean [live]?"]),
    ("unknown section no match", "[gpio]\npin = 1\n", {}, [],
     ["unknown section [gpio] in FILE; known sections: live, audio, vad, button, leds, control, privacy, tools, timers, state, log"]),
    ("key outside section", "model = 'x'\n", {}, [],
     ["key model in FILE is outside any section", "did you mean live.model?"]),
    ("string for number", "[live]\nsetup_timeout_s = 'fast'\n", {}, [],
     ["invalid live.setup_timeout_s = 'fast' in FILE: expected a number"]),
    ("float for int", "[live]\ncompression_trigger_tokens = 2.5\n", {}, [],
     ["invalid live.compression_trigger_tokens = 2.5 in FILE: expected a whole number"]),
    ("string for bool", "[live]\ninput_transcription = 'yes'\n", {}, [],
     ["invalid live.input_transcription = 'yes' in FILE: expected true or false"]),
    ("number for string", "[live]\nmodel = 3\n", {}, [],
     ["invalid live.model = 3 in FILE: expected a string"]),
    ("out of range high", "[live]\nsetup_timeout_s = 500\n", {}, [],
     ["invalid live.setup_timeout_s = 500.0 in FILE: must be between 0.5 and 120"]),
    ("out of range low", "[live]\nkeepalive_interval_s = 1\n", {}, [],
     ["invalid live.keepalive_interval_s = 1.0 in FILE: must be between 5 and 300"]),
    ("non-finite", "[live]\nreply_timeout_s = inf\n", {}, [],
     ["invalid live.reply_timeout_s = inf in FILE: expected a finite number"]),
    ("bad choice", "[live]\napi_version = 'v1bta'\n", {}, [],
     ["invalid live.api_version = 'v1bta' in FILE: must be one of: v1beta, v1alpha; did you mean v1beta?"]),
    ("retired api version", "[live]\napi_version = 'v1'\n", {}, [],
     ["invalid live.api_version = 'v1' in FILE: must be one of: v1beta, v1alpha; did you mean v1beta?",
      "served on v1beta and v1alpha only"]),
    ("bad log level", "[log]\nlevel = 'loud'\n", {}, [],
     ["invalid log.level = 'loud' in FILE: must be one of: debug, info, warning, error"]),
    ("empty model", "[live]\nmodel = ' '\n", {}, [],
     ["invalid live.model = ' ' in FILE: must not be empty"]),
    ("language shape", "[live]\nlanguage = 'en_US'\n", {}, [],
     ["invalid live.language = 'en_US' in FILE: must be a BCP-47 tag like en-US"]),
    ("endpoint scheme", "[live]\nendpoint = 'http://127.0.0.1:9000/ws'\n", {}, [],
     ["invalid live.endpoint = 'http://127.0.0.1:9000/ws' in FILE: must be a ws:// or wss:// URL"]),
    ("endpoint host", "[live]\nendpoint = 'ws:///path'\n", {}, [],
     ["invalid live.endpoint = 'ws:///path' in FILE: must name a host"]),
    ("cross-field from file", "[live]\ncompression_target_tokens = 30000\n", {}, [],
     ["invalid live.compression_target_tokens = 30000 in FILE: must be less than "
      "live.compression_trigger_tokens (25600)"]),
    ("cross-field names other origin", "[live]\ncompression_trigger_tokens = 1000\n", {}, [],
     ["invalid live.compression_target_tokens = 12800 (default): must be less than "
      "live.compression_trigger_tokens (1000) (live.compression_trigger_tokens was set in FILE)"]),
    ("env unknown key", "", {"APPLIANCE_LIVE_MODLE": "x"}, [],
     ["unknown key live.modle from environment variable APPLIANCE_LIVE_MODLE; "
      "did you mean APPLIANCE_LIVE_MODEL?"]),
    ("env unknown section", "", {"APPLIANCE_LIEV_MODEL": "x"}, [],
     ["unknown section [liev] from environment variable APPLIANCE_LIEV_MODEL; did you mean [live]?"]),
    ("env bad number", "", {"APPLIANCE_LIVE_SETUP_TIMEOUT_S": "soon"}, [],
     ["invalid live.setup_timeout_s = 'soon' from environment variable "
      "APPLIANCE_LIVE_SETUP_TIMEOUT_S: expected a number"]),
    ("env bad bool", "", {"APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION": "maybe"}, [],
     ["invalid live.output_transcription = 'maybe' from environment variable "
      "APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION: expected true/false, 1/0, yes/no or on/off"]),
    ("env out of range", "", {"APPLIANCE_LIVE_SETUP_TIMEOUT_S": "0.1"}, [],
     ["invalid live.setup_timeout_s = 0.1 from environment variable APPLIANCE_LIVE_SETUP_TIMEOUT_S: "
      "must be between 0.5 and 120"]),
    ("set unknown key", "", {}, ["live.voise=Puck"],
     ["unknown key live.voise from --set; did you mean live.voice?"]),
    ("set malformed", "", {}, ["live.model"],
     ["--set expects section.key=value, like live.model=NAME (got 'live.model')"]),
    ("set bad choice", "", {}, ["live.auth=oauth"],
     ["invalid live.auth = 'oauth' from --set: must be one of: api_key, ephemeral"]),
    ("set cross-field", "", {}, ["live.compression_target_tokens=25600"],
     ["invalid live.compression_target_tokens = 25600 from --set: must be less than"]),
    ("bad file value even when overridden", "[live]\nsetup_timeout_s = -1\n",
     {"APPLIANCE_LIVE_SETUP_TIMEOUT_S": "5"}, [],
     ["invalid live.setup_timeout_s = -1.0 in FILE"]),
]


@pytest.mark.parametrize(
    ("file_text", "env", "overrides", "fragments"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_bad_config_gives_one_clear_line(
    tmp_path: Path, file_text: str, env: dict[str, str], overrides: list[str], fragments: list[str]
) -> None:
    path = write(tmp_path, file_text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env=env, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment.replace("FILE", str(path)) in message


def test_toml_syntax_error_is_one_line_with_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nmodel = "unterminated\nvoice = "Kore"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"TOML syntax error in {path}: ")
    assert "line 2" in message


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path), env={})


# ----------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("variable", "text", "section", "key", "expected"),
    [
        ("APPLIANCE_LIVE_INPUT_TRANSCRIPTION", "false", "live", "input_transcription", False),
        ("APPLIANCE_LIVE_INPUT_TRANSCRIPTION", "0", "live", "input_transcription", False),
        ("APPLIANCE_LIVE_INPUT_TRANSCRIPTION", "no", "live", "input_transcription", False),
        ("APPLIANCE_LIVE_INPUT_TRANSCRIPTION", "Off", "live", "input_transcription", False),
        ("APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION", "TRUE", "live", "output_transcription", True),
        ("APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION", "1", "live", "output_transcription", True),
        ("APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION", " yes ", "live", "output_transcription", True),
        ("APPLIANCE_LIVE_OUTPUT_TRANSCRIPTION", "on", "live", "output_transcription", True),
        ("APPLIANCE_LIVE_SETUP_TIMEOUT_S", "5", "live", "setup_timeout_s", 5.0),
        ("APPLIANCE_LIVE_REPLY_TIMEOUT_S", "2.5", "live", "reply_timeout_s", 2.5),
        ("APPLIANCE_LIVE_COMPRESSION_TRIGGER_TOKENS", "40000", "live", "compression_trigger_tokens", 40000),
        ("APPLIANCE_LIVE_MODEL", "gemini-x", "live", "model", "gemini-x"),
        ("APPLIANCE_LIVE_LANGUAGE", "de-DE", "live", "language", "de-DE"),
        ("APPLIANCE_LIVE_AUTH", "Ephemeral", "live", "auth", "ephemeral"),
        ("APPLIANCE_LOG_LEVEL", "DEBUG", "log", "level", "debug"),
    ],
)
def test_environment_values_are_converted_to_the_field_type(
    variable: str, text: str, section: str, key: str, expected: object
) -> None:
    cfg = load_config(None, env={"APPLIANCE_CONFIG": os.devnull, variable: text})
    value = getattr(getattr(cfg, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_unrelated_environment_is_ignored() -> None:
    cfg = load_config(None, env={"APPLIANCE_CONFIG": os.devnull, "HOME": "/root", "APPLIANCEX": "1"})
    assert cfg.live == LiveConfig()


def test_list_fields_convert_from_text_and_toml() -> None:
    # No list setting exists yet; later sections (tools, leds) may declare tuple fields.
    spec = fields.Spec("demo", "names", str, True, {})
    assert fields.convert_text(spec, "a, b ,c") == ("a", "b", "c")
    assert fields.convert_text(spec, "") == ()
    assert fields.convert_typed(spec, ["x", "y"]) == ("x", "y")
    with pytest.raises(ValueError, match="expected a list of strings"):
        fields.convert_typed(spec, "x")


# ----------------------------------------------------------------------------- API key


def key_file(tmp_path: Path, content: str, mode: int = 0o600, name: str = "key.txt") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def config_with_key_file(path: Path | str) -> Config:
    return Config(live=LiveConfig(api_key_file=str(path)))


@pytest.mark.parametrize(
    ("use_env", "use_credential", "use_file", "expected"),
    [
        (True, True, True, "env-key"),
        (False, True, True, "credential-key"),
        (False, False, True, "file-key"),
        (True, False, True, "env-key"),
        (False, True, False, "credential-key"),
        (False, False, False, None),
    ],
)
def test_api_key_source_order(
    tmp_path: Path, use_env: bool, use_credential: bool, use_file: bool, expected: str | None
) -> None:
    env: dict[str, str] = {}
    if use_env:
        env["GEMINI_API_KEY"] = " env-key\n"
    credentials = tmp_path / "creds"
    credentials.mkdir()
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    if use_credential:
        key_file(credentials, "credential-key\n", mode=0o400, name="gemini-api-key")
    cfg = config_with_key_file(key_file(tmp_path, "file-key\n")) if use_file else Config()
    warnings: list[str] = []

    key = load_api_key(cfg, env=env, warn=warnings.append)

    assert (key.reveal() if key else None) == expected
    assert warnings == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_warns(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, "file-key\n", mode=mode)
    warnings: list[str] = []
    key = load_api_key(config_with_key_file(path), env={}, warn=warnings.append)
    assert key is not None and key.reveal() == "file-key"
    assert len(warnings) == 1
    assert str(path) in warnings[0] and f"chmod 600 {path}" in warnings[0]
    assert "file-key" not in warnings[0]


def test_key_file_warning_goes_to_the_log_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = key_file(tmp_path, "file-key\n", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="appliance.settings.keys"):
        load_api_key(config_with_key_file(path), env={})
    assert any("chmod 600" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("blank", "is empty"),
        ("directory", "is not a regular file"),
        ("two words", "must hold only the API key"),
    ],
)
def test_bad_key_file_is_an_error_naming_the_setting(tmp_path: Path, setup: str, fragment: str) -> None:
    path = tmp_path / "key.txt"
    if setup == "empty":
        key_file(tmp_path, "")
    elif setup == "blank":
        key_file(tmp_path, " \n\n")
    elif setup == "directory":
        path.mkdir()
    elif setup == "two words":
        key_file(tmp_path, f"GEMINI_API_KEY {FAKE_KEY}\n")
    with pytest.raises(ConfigError) as info:
        load_api_key(config_with_key_file(path), env={}, warn=lambda _: None)
    message = str(info.value)
    assert message.startswith("live.api_key_file ")
    assert fragment in message
    assert FAKE_KEY not in message


def test_key_file_error_says_where_the_setting_came_from(tmp_path: Path) -> None:
    missing = tmp_path / "gone.key"
    cfg = load_config(None, env={"APPLIANCE_CONFIG": os.devnull}, overrides=[f"live.api_key_file={missing}"])
    with pytest.raises(ConfigError, match=r"live.api_key_file '.*gone.key' \(from --set\) does not exist"):
        load_api_key(cfg, env={})


SECRET_LEAK_CASES = [
    ("endpoint with key", {}, [f"live.endpoint=wss://127.0.0.1/ws?key={FAKE_KEY}"]),
    ("key pasted as key file", {}, [f"live.api_key_file={FAKE_KEY}"]),
    ("key pasted into unknown key", {}, [f"live.api_key={FAKE_KEY}"]),
    ("key pasted as --set", {}, [FAKE_KEY]),
    ("key in environment setting", {"APPLIANCE_LIVE_API_KEY": FAKE_KEY}, []),
    ("key in wrong typed field", {"APPLIANCE_LIVE_SETUP_TIMEOUT_S": FAKE_KEY}, []),
]


@pytest.mark.parametrize(
    ("env", "overrides"), [c[1:] for c in SECRET_LEAK_CASES], ids=[c[0] for c in SECRET_LEAK_CASES]
)
def test_key_value_never_appears_in_config_errors(env: dict[str, str], overrides: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"APPLIANCE_CONFIG": os.devnull, **env}, overrides=overrides)
    assert FAKE_KEY not in str(info.value)
    assert FAKE_KEY not in repr(info.value)


def test_key_in_config_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, f'[live]\napi_key = "{FAKE_KEY}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert FAKE_KEY not in str(info.value)
    assert "GEMINI_API_KEY" in str(info.value)


def test_key_with_spaces_in_environment_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_api_key(Config(), env={"GEMINI_API_KEY": f"{FAKE_KEY} extra"})
    assert "environment variable GEMINI_API_KEY" in str(info.value)
    assert FAKE_KEY not in str(info.value)


# ----------------------------------------------------------------------------- Secret


def test_secret_never_shows_its_value() -> None:
    secret = Secret(FAKE_KEY)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, format(secret, ">40"),
             repr([secret]), repr({"key": secret})]
    assert all(FAKE_KEY not in text for text in shown)
    assert repr(secret) == "Secret('****')"
    assert secret.reveal() == FAKE_KEY


def test_secret_cannot_be_pickled_but_compares_and_copies() -> None:
    secret = Secret(FAKE_KEY)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(secret, protocol=protocol)
    assert copy.deepcopy(secret) == secret == Secret(FAKE_KEY)
    assert secret != Secret("other")
    with pytest.raises(AttributeError):
        secret._value = "changed"  # type: ignore[misc]


# ----------------------------------------------------------------------------- redaction


@pytest.fixture
def captured_logger() -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_config.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_redacting_filter_removes_secret_from_message_args_and_traceback(
    captured_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured_logger
    handler.addFilter(RedactingFilter([Secret(FAKE_KEY)]))

    logger.info(f"plain {FAKE_KEY} text")
    logger.warning("connecting to %s with %r", f"wss://h/?key={FAKE_KEY}", {"key": FAKE_KEY})
    try:
        raise RuntimeError(f"server rejected {FAKE_KEY}")
    except RuntimeError:
        logger.exception("failed for %s", FAKE_KEY)

    output = stream.getvalue()
    assert FAKE_KEY not in output
    assert output.count("[redacted]") == 5
    assert "plain [redacted] text" in output
    assert "RuntimeError: server rejected [redacted]" in output
    assert "Traceback" in output


def test_redacting_filter_covers_values_added_later_and_keeps_other_text(
    captured_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured_logger
    redactor = RedactingFilter([])
    handler.addFilter(redactor)
    redactor.add("")  # ignored: an empty secret would redact everything
    redactor.add("token-123")
    logger.info("a %d%% done, token-123, token-1234", 50)
    assert stream.getvalue() == "INFO a 50% done, [redacted], [redacted]4\n"


def test_install_redaction_covers_existing_root_handlers() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    before = {h: list(h.filters) for h in root.handlers}  # pytest's own handlers are there too
    try:
        install_redaction(Secret(FAKE_KEY))
        install_redaction(Secret("second-secret"))  # joins the existing filter
        logging.getLogger("appliance.somewhere").info("key=%s other=%s", FAKE_KEY, "second-secret")
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for other, filters in before.items():
            other.filters[:] = filters
    assert stream.getvalue() == "key=[redacted] other=[redacted]\n"


# ----------------------------------------------------------------------------- endpoint


GOOGLE = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage"


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (LiveConfig(), f"{GOOGLE}.v1beta.GenerativeService.BidiGenerateContent"),
        (LiveConfig(api_version="v1alpha"), f"{GOOGLE}.v1alpha.GenerativeService.BidiGenerateContent"),
        (LiveConfig(auth="ephemeral"), f"{GOOGLE}.v1alpha.GenerativeService.BidiGenerateContentConstrained"),
        (LiveConfig(auth="ephemeral", api_version="v1beta"),
         f"{GOOGLE}.v1alpha.GenerativeService.BidiGenerateContentConstrained"),
        (LiveConfig(endpoint="ws://127.0.0.1:8765/live", auth="ephemeral"), "ws://127.0.0.1:8765/live"),
    ],
)
def test_endpoint_url(live: LiveConfig, expected: str) -> None:
    assert endpoint_url(live) == expected


def test_endpoint_override_loads_from_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[live]\nendpoint = "ws://127.0.0.1:8765/emulator"\n')
    assert endpoint_url(load_config(str(path), env={}).live) == "ws://127.0.0.1:8765/emulator"


# ----------------------------------------------------------------------------- template


def test_template_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, config_template())
    cfg = load_config(str(path), env={})
    assert (cfg.live, cfg.log) == (Config().live, Config().log)
    assert cfg.origins == {}


def test_template_with_every_line_uncommented_is_still_the_defaults(tmp_path: Path) -> None:
    lines = config_template().splitlines()
    active = [line[1:] if line.startswith("#") and " = " in line and not line.startswith("# ") else line
              for line in lines]
    path = write(tmp_path, "\n".join(active) + "\n")
    document = tomllib.loads(path.read_text())
    assert set(document["live"]) == {f.name for f in LiveConfig.__dataclass_fields__.values()}
    assert set(document["log"]) == {"level"}
    sections = [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.type) or f.name in document]
    cfg = load_config(str(path), env={})
    for section in sections:
        assert getattr(cfg, section) == getattr(Config(), section)
    assert set(cfg.origins) == {f"{section}.{name}" for section in sections for name in document[section]}


def test_template_documents_constraints() -> None:
    template = config_template()
    assert "# (one of: v1beta, v1alpha; env APPLIANCE_LIVE_API_VERSION)" in template
    assert "range 0.5..120" in template


# ----------------------------------------------------------------------------- appliance config, as run over SSH


def run_appliance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh interpreter, with none of this shell's APPLIANCE_/GEMINI_ variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=60, env=full_env, stdin=subprocess.DEVNULL)


BROKEN = "[live]\nvoice = 'Koer'\nmodle = 'gemini-3.8-live'\n[audio]\nvolume = 700\n"


def test_config_check_lists_every_mistake_where_every_other_command_stops_at_one(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    refused = run_appliance("--config", str(path), "ask", "--text", "hi")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1

    checked = run_appliance("--config", str(path), "config", "check")
    lines = checked.stdout.splitlines()
    assert checked.returncode == 1 and checked.stderr == ""
    assert lines[0] == refused.stderr.strip().removeprefix("appliance: ")  # the daemon's first is the check's first
    assert "did you mean Kore?" in lines[0]
    assert lines[1] == f"unknown key live.modle in {path}; did you mean live.model?"
    assert lines[2] == f"invalid audio.volume = 700 in {path}: must be between 0 and 100"
    assert lines[3] == f"3 mistakes (config file {path})"


def test_config_show_refuses_a_broken_config_as_the_daemon_does_and_points_at_check(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    refused = run_appliance("--config", str(path), "run")
    shown = run_appliance("--config", str(path), "config", "show")
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr == refused.stderr.rstrip("\n") + "; run `appliance config check` for the full list\n"


def test_config_show_names_each_origin_and_hides_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[live]\nvoice = 'puck'\n")
    result = run_appliance("config", "show", env={"APPLIANCE_CONFIG": str(path), "APPLIANCE_VAD_AGGRESSIVENESS": "3",
                                                  "GEMINI_API_KEY": FAKE_KEY})
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and FAKE_KEY not in result.stdout
    assert f"live.voice = 'Puck'  (file {path})" in lines
    assert "vad.aggressiveness = 3  (environment APPLIANCE_VAD_AGGRESSIVENESS)" in lines
    assert "api key = set (hidden)  (environment variable GEMINI_API_KEY)" in lines


def test_an_mcp_mistake_is_listed_by_check_and_refused_by_the_daemon_in_one_line(tmp_path: Path) -> None:
    token = tmp_path / "home-token"
    token.write_text("tok-e2e-3b9c71-never-shown\n")
    token.chmod(0o644)  # others can read it: refused, with the chmod that fixes it
    path = write(tmp_path, f"[audio]\nvolume = 700\n[[mcp.servers]]\nname = \"home\"\n"
                           f"url = \"http://homeassistant.local:8123/api/mcp\"\ntoken_file = \"{token}\"\n"
                           "colour = \"red\"\n")
    refused = run_appliance("--config", str(path), "run", "--keyboard")
    checked = run_appliance("--config", str(path), "--set", "mcp.servers=home", "config", "check")
    lines = checked.stdout.splitlines()
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert checked.returncode == 1 and lines[0] == refused.stderr.strip().removeprefix("appliance: ")
    assert lines[1].startswith("mcp.servers[0].'colour' is not a setting; known: name, url, token_file")
    assert lines[2].startswith("mcp.servers from --set cannot be set there")
    assert lines[3] == f"3 mistakes (config file {path})"

    path.write_text(path.read_text().replace("volume = 700", "volume = 50").replace('colour = "red"\n', ""))
    refused = run_appliance("--config", str(path), "run", "--keyboard")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith(f"appliance: mcp.servers[0].token_file '{token}' has mode 644")
    assert f"chmod 600 {token}" in refused.stderr and "tok-e2e-3b9c71" not in refused.stderr


def test_the_printed_template_checks_clean(tmp_path: Path) -> None:
    template = run_appliance("config", "template")
    assert template.returncode == 0 and template.stdout == config_template()
    path = write(tmp_path, template.stdout)
    checked = run_appliance("config", "check", str(path))
    assert (checked.returncode, checked.stdout) == (0, f"no mistakes: config file {path}\n")


# ----------------------------------------------------------------------------- close reasons


def test_a_service_close_reason_reaches_the_owner_whole_escaped_and_without_the_key(tmp_path: Path) -> None:
    """The longest reason a close frame holds (123 bytes), with escapes and the key in it."""
    from appliance.ipc.wire import one_line
    from appliance.textsafe import escape_controls

    key = "test-key-reason-7f3a"
    head = f"denied \x1b[2J\x1b]0;owned\x07 for {key}: "
    reason = head + "é" * ((123 - len(head.encode())) // 2)
    reason += "." * (123 - len(reason.encode()))
    assert len(reason.encode()) == 123
    expected = escape_controls(reason.replace(key, "[redacted]"))

    emulator = subprocess.Popen([sys.executable, "-m", "appliance", "emulator", "--pace", "0",
                                 "--scenario", f"reject-setup:1008:{reason}"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator.stdout.readline().strip()
        asked = run_appliance("--set", f"live.endpoint={url}", "ask", "--text", "hi", env={"GEMINI_API_KEY": key})
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    assert asked.returncode == 3
    assert asked.stderr.splitlines()[-1] == f"appliance ask: the service refused the session: {expected}"
    assert "\x1b" not in asked.stderr and "\x07" not in asked.stderr and key not in asked.stderr
    # an error reply over the control socket that quotes the reason keeps it whole too, even a
    # plain 123-byte one after a sentence of ours
    for quoted in (expected, "x" * 123):
        assert one_line(f"cannot listen: the service refused the session (1008): {quoted}").endswith(quoted)
