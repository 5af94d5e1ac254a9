"""Per-model differences in the `setup` message.

The Live models disagree on which optional generation fields they accept: a field one
model needs is a 1007 close on another. Keeping those differences in one table means
the setup builder never guesses, and an unknown model gets the safest choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelProfile:
    """What a model accepts beyond the fields every Live model takes."""

    name: str
    #: sent as `generationConfig.thinkingConfig`; None means the field is omitted
    thinking_config: dict[str, Any] | None = None
    #: send `generationConfig.enableAffectiveDialog: true`
    affective_dialog: bool = False
    #: send `proactivity.proactiveAudio: true` (never false: some models reject false)
    proactive_audio: bool = False
    #: `behavior` for function declarations, or None to omit the field
    tool_behavior: str | None = None
    #: a declaration may ask for `behavior: NON_BLOCKING` (async calls) itself; where it may
    #: not, its own behavior is dropped for `tool_behavior`
    non_blocking_tools: bool = False
    #: whether `{"googleSearch": {}}` may sit beside our function declarations
    search_with_functions: bool = False
    known: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


_PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(
            name="gemini-3.8-live",
            # 3.8 has no thinking knob, dropped affective dialog, and always runs
            # proactive audio (sending proactiveAudio: false is an error).
            tool_behavior="BLOCKING",
            non_blocking_tools=True,
            search_with_functions=True,
        ),
        ModelProfile(
            name="gemini-3.8-live-extended-thinking",
            # Function calling is async only here: a declaration that is not
            # NON_BLOCKING (or leaves `behavior` out) closes the session with 1007.
            tool_behavior="NON_BLOCKING",
            non_blocking_tools=True,
            search_with_functions=True,
        ),
        ModelProfile(
            name="gemini-3.1-flash-live-preview",
            # 3.1 thinks by level; minimal keeps latency low.  Its tool calls are
            # synchronous only, so `behavior` is left out.
            thinking_config={"thinkingLevel": "MINIMAL"},
        ),
        ModelProfile(
            name="gemini-2.5-flash-native-audio-preview-12-2025",
            thinking_config={"thinkingBudget": 0},
            affective_dialog=True,
            tool_behavior="BLOCKING",
            non_blocking_tools=True,
        ),
    )
}

DEFAULT_MODEL = "gemini-3.8-live"


def strip_models_prefix(model: str) -> str:
    return model[len("models/") :] if model.startswith("models/") else model


def profile_for(model: str) -> ModelProfile:
    """The profile for a model id; unknown ids get the most conservative one.

    The conservative profile sends none of the optional fields, which every model
    accepts; `known` is False so the caller can warn the owner.
    """
    model_id = strip_models_prefix(model)
    found = _PROFILES.get(model_id)
    if found is not None:
        return found
    return ModelProfile(name=model_id, known=False)


def known_models() -> tuple[str, ...]:
    return tuple(_PROFILES)
