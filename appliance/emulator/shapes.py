"""The shapes of the messages a client may send, as one table of proto messages, fields and enums.

Written from the field lists in /work/shared/live-protocol.md §3 (and the message types they refer to);
``schema`` walks a client message against it. Field names here are the camelCase ones; a str where a
field's type belongs names another registered message, so recursive shapes (Schema) can refer to themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CLIENT_MESSAGE", "Enum", "MapOf", "Message", "Repeated", "Scalar", "resolve"]


@dataclass(frozen=True)
class Message:
    """A proto message: only the listed fields are allowed. A str value refers to another named message."""

    type_name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Repeated:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """A proto map<string, V>: keys are free text (not normalised), values follow ``value``."""

    value: Any


@dataclass(frozen=True)
class Scalar:
    kind: str  # string | bool | int32 | int64 | float | bytes | struct (any JSON object) | any (any JSON)


@dataclass(frozen=True)
class Enum:
    type_name: str
    values: frozenset[str]


STRING = Scalar("string")
BOOL = Scalar("bool")
INT32 = Scalar("int32")
INT64 = Scalar("int64")
FLOAT = Scalar("float")
BYTES = Scalar("bytes")
STRUCT = Scalar("struct")
ANY = Scalar("any")
EMPTY = Message("Empty", {})


def _enum(name: str, *values: str) -> Enum:
    return Enum(name, frozenset(values))


_SCHEMA_TYPE = _enum("Type", "TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
_SENSITIVITY_START = _enum("StartSensitivity", "START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH",
                           "START_SENSITIVITY_LOW")
_SENSITIVITY_END = _enum("EndSensitivity", "END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH",
                         "END_SENSITIVITY_LOW")

_REGISTRY: dict[str, Message] = {}


def _register(message: Message) -> Message:
    _REGISTRY[message.type_name] = message
    return message


BLOB = _register(Message("Blob", {"mimeType": STRING, "data": BYTES}))
SCHEMA = _register(Message("Schema", {
    "type": _SCHEMA_TYPE, "format": STRING, "title": STRING, "description": STRING, "nullable": BOOL,
    "enum": Repeated(STRING), "maxItems": INT64, "minItems": INT64, "properties": MapOf("Schema"),
    "required": Repeated(STRING), "minProperties": INT64, "maxProperties": INT64, "minLength": INT64,
    "maxLength": INT64, "pattern": STRING, "example": ANY, "anyOf": Repeated("Schema"),
    "propertyOrdering": Repeated(STRING), "default": ANY, "items": "Schema", "minimum": FLOAT, "maximum": FLOAT,
}))
FUNCTION_RESPONSE = _register(Message("FunctionResponse", {
    "id": STRING, "name": STRING, "response": STRUCT, "willContinue": BOOL,
    "scheduling": _enum("Scheduling", "SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"),
    "parts": Repeated(STRUCT),
}))
PART = _register(Message("Part", {
    "text": STRING, "inlineData": "Blob", "thought": BOOL, "thoughtSignature": BYTES,
    "fileData": Message("FileData", {"mimeType": STRING, "fileUri": STRING}),
    "functionCall": Message("FunctionCall", {"id": STRING, "name": STRING, "args": STRUCT}),
    "functionResponse": "FunctionResponse",
    "executableCode": Message("ExecutableCode", {"language": STRING, "code": STRING}),
    "codeExecutionResult": Message("CodeExecutionResult", {"outcome": STRING, "output": STRING}),
    "videoMetadata": STRUCT,
}))
CONTENT = _register(Message("Content", {"role": STRING, "parts": Repeated("Part")}))
FUNCTION_DECLARATION = _register(Message("FunctionDeclaration", {
    "name": STRING, "description": STRING, "parameters": "Schema", "parametersJsonSchema": ANY,
    "response": "Schema", "responseJsonSchema": ANY,
    "behavior": _enum("Behavior", "UNSPECIFIED", "BLOCKING", "NON_BLOCKING"),
}))
TOOL = _register(Message("Tool", {
    "functionDeclarations": Repeated("FunctionDeclaration"), "googleSearch": STRUCT, "codeExecution": STRUCT,
    "googleMaps": STRUCT, "urlContext": STRUCT, "googleSearchRetrieval": STRUCT, "computerUse": STRUCT,
    "fileSearch": STRUCT,
}))
GENERATION_CONFIG = _register(Message("GenerationConfig", {
    "responseModalities": Repeated(_enum("Modality", "MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO", "VIDEO")),
    "speechConfig": Message("SpeechConfig", {
        "voiceConfig": Message("VoiceConfig", {
            "prebuiltVoiceConfig": Message("PrebuiltVoiceConfig", {"voiceName": STRING}),
            "replicatedVoiceConfig": Message("ReplicatedVoiceConfig", {
                "mimeType": STRING, "voiceSampleAudio": BYTES, "consentAudio": BYTES, "voiceConsentSignature": ANY,
            }),
        }),
        "languageCode": STRING,
    }),
    "thinkingConfig": Message("ThinkingConfig", {
        "includeThoughts": BOOL, "thinkingBudget": INT32,
        "thinkingLevel": _enum("ThinkingLevel", "THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"),
    }),
    "temperature": FLOAT, "topP": FLOAT, "topK": INT32, "maxOutputTokens": INT32, "seed": INT32,
    "candidateCount": INT32, "stopSequences": Repeated(STRING), "presencePenalty": FLOAT,
    "frequencyPenalty": FLOAT, "responseLogprobs": BOOL, "logprobs": INT32, "responseMimeType": STRING,
    "responseSchema": "Schema", "responseJsonSchema": ANY, "enableEnhancedCivicAnswers": BOOL,
    "mediaResolution": _enum("MediaResolution", "MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW",
                             "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH"),
    "enableAffectiveDialog": BOOL,
    "translationConfig": Message("TranslationConfig", {"targetLanguageCode": STRING, "echoTargetLanguage": BOOL}),
}))
AUDIO_TRANSCRIPTION_CONFIG = _register(Message("AudioTranscriptionConfig", {
    "languageCodes": Repeated(STRING), "languageAuto": ANY, "languageHints": ANY, "customVocabulary": ANY,
    "adaptationPhrases": ANY, "wordTimestamp": BOOL, "diarization": ANY, "mode": ANY, "sourceText": ANY,
}))
SETUP = _register(Message("BidiGenerateContentSetup", {
    "model": STRING,
    "generationConfig": "GenerationConfig",
    "systemInstruction": "Content",
    "tools": Repeated("Tool"),
    "realtimeInputConfig": Message("RealtimeInputConfig", {
        "automaticActivityDetection": Message("AutomaticActivityDetection", {
            "disabled": BOOL, "startOfSpeechSensitivity": _SENSITIVITY_START,
            "endOfSpeechSensitivity": _SENSITIVITY_END, "prefixPaddingMs": INT32, "silenceDurationMs": INT32,
        }),
        "activityHandling": _enum("ActivityHandling", "ACTIVITY_HANDLING_UNSPECIFIED",
                                  "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"),
        "turnCoverage": _enum("TurnCoverage", "TURN_COVERAGE_UNSPECIFIED", "TURN_INCLUDES_ONLY_ACTIVITY",
                              "TURN_INCLUDES_ALL_INPUT", "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO"),
        "interimTranscriptTimestampEnabled": BOOL,
    }),
    "sessionResumption": Message("SessionResumptionConfig", {"handle": STRING}),
    "contextWindowCompression": Message("ContextWindowCompressionConfig", {
        "triggerTokens": INT64, "slidingWindow": Message("SlidingWindow", {"targetTokens": INT64}),
    }),
    "inputAudioTranscription": "AudioTranscriptionConfig",
    "outputAudioTranscription": "AudioTranscriptionConfig",
    "proactivity": Message("ProactivityConfig", {"proactiveAudio": BOOL, "proactiveVideo": BOOL}),
    "historyConfig": Message("HistoryConfig", {"initialHistoryInClientContent": BOOL}),
    "safetySettings": Repeated(Message("SafetySetting", {"category": STRING, "threshold": STRING})),
    "labels": MapOf(STRING),
    "avatarConfig": Message("AvatarConfig", {
        "avatarName": STRING, "customizedAvatar": ANY, "audioBitrateBps": INT32, "videoBitrateBps": INT32,
    }),
}))
REALTIME_INPUT = _register(Message("BidiGenerateContentRealtimeInput", {
    "audio": "Blob", "video": "Blob", "mediaChunks": Repeated("Blob"), "text": STRING,
    "activityStart": EMPTY, "activityEnd": EMPTY, "audioStreamEnd": BOOL,
}))
CLIENT_CONTENT = _register(Message("BidiGenerateContentClientContent", {
    "turns": Repeated("Content"), "turnComplete": BOOL,
}))
TOOL_RESPONSE = _register(Message("BidiGenerateContentToolResponse", {
    "functionResponses": Repeated("FunctionResponse"),
}))
CONTEXT_UPDATE = _register(Message("BidiGenerateContentContextUpdate", {
    "systemInstruction": "Content", "tools": Message("ContextUpdateTools", {"tools": Repeated("Tool")}),
}))
CLIENT_MESSAGE = _register(Message("BidiGenerateContentClientMessage", {
    "setup": "BidiGenerateContentSetup", "clientContent": "BidiGenerateContentClientContent",
    "realtimeInput": "BidiGenerateContentRealtimeInput", "toolResponse": "BidiGenerateContentToolResponse",
    "contextUpdate": "BidiGenerateContentContextUpdate",
}))


def resolve(spec: Any) -> Any:
    """The shape a field's type names: a registered message for a str, else the shape itself."""
    return _REGISTRY[spec] if isinstance(spec, str) else spec
