"""The names the Live service offers, as the settings check them: its prebuilt voices and its models."""

from __future__ import annotations

import pytest

from appliance.emulator.model_rules import DEFAULT_MODEL_RULES
from appliance.live.profiles import DEFAULT_MODEL, known_models
from appliance.live.voices import PREBUILT_VOICES
from appliance.settings.errors import ConfigError
from appliance.settings.loader import collect_config, load_config
from appliance.settings.schema import LiveConfig
from appliance.settings.validate import config_warnings


def test_the_list_is_the_thirty_voices_and_holds_the_default() -> None:
    assert len(PREBUILT_VOICES) == len(set(PREBUILT_VOICES)) == 30
    assert LiveConfig().voice in PREBUILT_VOICES
    assert all(name[:1].isupper() and name.isalpha() for name in PREBUILT_VOICES)


@pytest.mark.parametrize("voice", PREBUILT_VOICES)
def test_every_prebuilt_voice_is_accepted(voice: str) -> None:
    assert load_config(env={}, overrides=[f"live.voice={voice}"]).live.voice == voice


@pytest.mark.parametrize(("written", "sent"), [("kore", "Kore"), ("PUCK", "Puck"), ("zubenelgenubi", "Zubenelgenubi")])
def test_a_voice_in_another_case_is_sent_as_the_service_spells_it(written: str, sent: str) -> None:
    assert load_config(env={"APPLIANCE_LIVE_VOICE": written}).live.voice == sent


@pytest.mark.parametrize(("typo", "meant"), [("Koer", "Kore"), ("puk", "Puck"), ("CHARRON", "Charon"), ("sulafa", "Sulafat")])
def test_a_mistyped_voice_is_refused_with_a_suggestion(typo: str, meant: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=[f"live.voice={typo}"])
    message = str(info.value)
    assert message.startswith(f"invalid live.voice = {typo!r} from --set: ")
    assert f"did you mean {meant}?" in message
    assert message.index("did you mean") < message.index("Zephyr")  # the hint is not buried after 30 names


def test_a_voice_like_no_other_is_refused_with_the_whole_list() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=["live.voice=Robot"])
    message = str(info.value)
    assert "did you mean" not in message
    assert message.endswith("must be one of: " + ", ".join(PREBUILT_VOICES))


def test_the_emulator_serves_the_models_the_client_and_the_settings_know() -> None:
    assert set(DEFAULT_MODEL_RULES) == set(known_models())
    assert DEFAULT_MODEL in known_models() and LiveConfig().model == DEFAULT_MODEL


@pytest.mark.parametrize("model", [*known_models(), f"models/{DEFAULT_MODEL}"])
def test_a_known_model_draws_no_warning(model: str) -> None:
    collected = collect_config(env={}, overrides=[f"live.model={model}"])
    assert collected.problems == () and collected.warnings == ()


def test_an_unknown_model_still_loads_but_is_warned_about_with_a_suggestion_and_the_list() -> None:
    cfg = load_config(env={}, overrides=["live.model=gemini-3.8-lvie"])  # the daemon still accepts it
    assert cfg.live.model == "gemini-3.8-lvie"
    [warning] = config_warnings(cfg)
    assert warning.startswith("live.model = 'gemini-3.8-lvie': is not a model this version knows")
    assert "did you mean gemini-3.8-live?" in warning
    assert warning.endswith("known models: " + ", ".join(known_models()))


def test_a_model_in_the_wrong_case_is_pointed_at_its_real_name() -> None:
    [warning] = config_warnings(load_config(env={}, overrides=["live.model=Gemini-3.8-Live"]))
    assert "did you mean gemini-3.8-live?" in warning


@pytest.mark.parametrize(("model", "said"), [
    ("gemini-2.0-flash-live-001", "was shut down on 2025-12-09"),
    ("gemini-live-2.5-flash-preview", "was shut down on 2025-12-09"),
    ("gemini-live-2.5-flash-native-audio", "Vertex AI only"),
])
def test_a_model_the_gemini_api_no_longer_serves_says_so(model: str, said: str) -> None:
    [warning] = collect_config(env={}, overrides=[f"live.model={model}"]).warnings
    assert said in warning and "the service will refuse it" in warning
    assert warning.endswith("use one of: " + ", ".join(known_models()))
