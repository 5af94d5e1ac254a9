"""Reading a client's setup message into the options of its session, with every refusal the service sends.

Sans I/O: a setup message in, ``SessionOptions`` out, or a ``ProtocolViolation`` with the close code and
reason. The checks run in the service's order (shape, model, the model's own rules, tools), so the first
fault found is the one reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.emulator.config import EmulatorConfig
from appliance.emulator.model_rules import ModelRules, check_function_behaviors, check_model_rules, declared_behaviors
from appliance.emulator.rejections import INVALID_ARGUMENT, ProtocolViolation, invalid
from appliance.emulator.schema import normalise_client_message, peek_setup_model, validate_function_names

__all__ = ["DeclaredTools", "SessionOptions", "declare_tools", "read_setup"]


@dataclass(frozen=True)
class DeclaredTools:
    """The functions a client declared (in setup, or later in contextUpdate) and how each is scheduled."""

    names: set[str] = field(default_factory=set)
    behaviors: dict[str, str | None] = field(default_factory=dict)  # name -> behavior (None: left open)


@dataclass(frozen=True)
class SessionOptions:
    """What setup asked for. The defaults are what a connection assumes before its setup is read."""

    model_id: str = ""
    setup: dict[str, Any] = field(default_factory=dict)  # the normalised (camelCase) setup body
    rules: ModelRules = field(default_factory=ModelRules)
    aad_enabled: bool = True
    interrupts: bool = True
    input_transcription: bool = False
    output_transcription: bool = False
    resumption: bool = False
    resume_handle: str | None = None
    tools: DeclaredTools = field(default_factory=DeclaredTools)


def declare_tools(tools: list[dict[str, Any]], where: str, rules: ModelRules) -> DeclaredTools:
    """Check declared functions (names, and behaviors where the model insists) and list them."""
    names = validate_function_names(tools, where)
    check_function_behaviors(tools, where, rules)
    return DeclaredTools(names, declared_behaviors(tools))


def read_setup(message: Any, api_version: str, config: EmulatorConfig) -> SessionOptions:
    """Validate the first client message as setup; raise ``ProtocolViolation`` as the service would."""
    peeked = peek_setup_model(message)
    rules = config.model_rules.get(peeked, ModelRules()) if peeked else ModelRules()
    kind, setup = normalise_client_message(message, api_version, reject_null=not rules.null_values)
    if kind != "setup":
        raise invalid(f"{INVALID_ARGUMENT} The first message must be setup; got {kind}.")
    model = setup.get("model", "")
    if not model:
        raise invalid(f"{INVALID_ARGUMENT} setup.model is required, e.g. models/gemini-3.8-live.")
    model_id = model[len("models/"):] if model.startswith("models/") else None
    if model_id is None or model_id not in config.models:
        raise ProtocolViolation(
            1008, f"{model} is not found for API version {api_version}, or is not supported for "
                  "bidiGenerateContent. Call ListModels to see the list of available models and their "
                  "supported methods.")
    rules = config.model_rules.get(model_id, ModelRules())
    check_model_rules(setup, model_id, rules)
    tools = declare_tools(setup.get("tools", []), "setup.tools", rules)
    realtime = setup.get("realtimeInputConfig", {})
    return SessionOptions(
        model_id=model_id,
        setup=setup,
        rules=rules,
        aad_enabled=not realtime.get("automaticActivityDetection", {}).get("disabled", False),
        interrupts=realtime.get("activityHandling") != "NO_INTERRUPTION",
        input_transcription="inputAudioTranscription" in setup,
        output_transcription="outputAudioTranscription" in setup,
        resumption="sessionResumption" in setup,
        resume_handle=setup.get("sessionResumption", {}).get("handle"),
        tools=tools,
    )
