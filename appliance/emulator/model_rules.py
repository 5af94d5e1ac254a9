"""What each Live model accepts in setup beyond the shared message shapes, and how it schedules tool calls.

Why apart from the schema: the shapes are the same for every model, these rules are what differs between
them (see live-protocol.md §3.1 / §6 and the December corrections), and tests add models of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.emulator.rejections import INVALID_ARGUMENT, ProtocolViolation, invalid

__all__ = ["DEFAULT_MODEL_RULES", "ModelRules", "check_function_behaviors", "check_model_rules",
           "declared_behaviors"]


@dataclass(frozen=True)
class ModelRules:
    """What a model accepts in setup beyond the shared schema (see §3.1 / §6 and the December corrections)."""

    thinking_config: bool = True
    thinking_budget: bool = True
    thinking_level: bool = True
    affective_dialog: bool = True
    proactivity: bool = True
    proactive_audio_off: bool = True
    #: the legacy ``realtimeInput.mediaChunks`` list (3.1 and later close 1007: "deprecated")
    media_chunks: bool = True
    #: null field values read as "default" (proto3 JSON); 3.1 and later close 1007 on them instead
    null_values: bool = True
    #: function calling is async only: every declaration must say ``behavior: NON_BLOCKING``
    non_blocking_only: bool = False
    #: async (NON_BLOCKING) function calls exist at all (3.1's calls are synchronous only)
    non_blocking_calls: bool = True
    #: how the model schedules a declaration that leaves ``behavior`` out
    default_behavior: str = "BLOCKING"


DEFAULT_MODEL_RULES: dict[str, ModelRules] = {
    "gemini-3.8-live": ModelRules(thinking_config=False, affective_dialog=False, proactive_audio_off=False,
                                  media_chunks=False, null_values=False, default_behavior="NON_BLOCKING"),
    "gemini-3.8-live-extended-thinking": ModelRules(thinking_budget=False, affective_dialog=False,
                                                    proactive_audio_off=False, media_chunks=False,
                                                    null_values=False, non_blocking_only=True,
                                                    default_behavior="NON_BLOCKING"),
    "gemini-3.1-flash-live-preview": ModelRules(thinking_budget=False, affective_dialog=False, proactivity=False,
                                                media_chunks=False, null_values=False, non_blocking_calls=False),
    "gemini-2.5-flash-native-audio-preview-12-2025": ModelRules(thinking_level=False),
}

_BEHAVIOR_NUMBERS = {0: "UNSPECIFIED", 1: "BLOCKING", 2: "NON_BLOCKING"}


def declared_behaviors(tools: list[dict[str, Any]]) -> dict[str, str | None]:
    """Declared function name -> its ``behavior`` ("BLOCKING"/"NON_BLOCKING"), None when left open.

    Takes normalised (camelCase) tools; enum numbers are mapped to names, UNSPECIFIED counts as left open.
    """
    found: dict[str, str | None] = {}
    for tool in tools:
        for decl in tool.get("functionDeclarations", []):
            behavior = decl.get("behavior")
            if isinstance(behavior, int):
                behavior = _BEHAVIOR_NUMBERS.get(behavior)
            found[decl.get("name", "")] = behavior if behavior in ("BLOCKING", "NON_BLOCKING") else None
    return found


def check_function_behaviors(tools: list[dict[str, Any]], where: str, rules: ModelRules) -> None:
    """Models with async-only function calling refuse a declaration that is not NON_BLOCKING (1007).

    A missing behavior counts as BLOCKING there: the reports say BLOCKING is rejected, and nothing says
    the model would fill in NON_BLOCKING by itself.
    """
    if not rules.non_blocking_only:
        return
    for ti, tool in enumerate(tools):
        for fi, decl in enumerate(tool.get("functionDeclarations", [])):
            behavior = decl.get("behavior")
            if behavior in ("NON_BLOCKING", 2):
                continue
            shown = behavior if isinstance(behavior, str) else "unset"
            raise invalid(f"{INVALID_ARGUMENT} NON_BLOCKING functions only; behavior {shown} at "
                          f"{where}[{ti}].functionDeclarations[{fi}].")


def check_model_rules(setup: Mapping[str, Any], model_id: str, rules: ModelRules) -> None:
    """Reject setup fields the chosen model does not take (1007, naming the field)."""
    gen = setup.get("generationConfig", {})

    def refuse(field: str) -> ProtocolViolation:
        return invalid(f"{INVALID_ARGUMENT} {field} is not supported by models/{model_id}.")

    modalities = gen.get("responseModalities", [])
    if modalities and list(modalities) != ["AUDIO"]:
        listed = ", ".join(str(m) for m in modalities)
        raise invalid(f"The requested combination of response modalities ({listed}) is not supported by the model.")
    thinking = gen.get("thinkingConfig")
    if thinking is not None:
        if not rules.thinking_config:
            raise refuse("generationConfig.thinkingConfig")
        if "thinkingBudget" in thinking and not rules.thinking_budget:
            raise refuse("generationConfig.thinkingConfig.thinkingBudget")
        if "thinkingLevel" in thinking and not rules.thinking_level:
            raise refuse("generationConfig.thinkingConfig.thinkingLevel")
    if "enableAffectiveDialog" in gen and not rules.affective_dialog:
        raise refuse("generationConfig.enableAffectiveDialog")
    proactivity = setup.get("proactivity")
    if proactivity is not None:
        if not rules.proactivity:
            raise refuse("proactivity")
        if proactivity.get("proactiveAudio") is False and not rules.proactive_audio_off:
            raise refuse("proactivity.proactiveAudio=false")
