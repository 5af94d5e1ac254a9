"""Strict validation of client -> server Live API messages, for the offline emulator.

Why this exists: the real service parses client frames as proto3 JSON and closes the socket (1007/1008) on
anything it does not know. A client bug that a lenient fake accepts would only show up on a user's counter,
so the emulator rejects the same things, with reasons worded like Google's.

The message shapes are the table in ``shapes``; this module walks a message against it. Names are accepted
in lowerCamelCase or snake_case at every level (proto3 JSON accepts both); the validator returns a copy
normalised to camelCase. Free-form payloads (function ``args``/``response``, Schema ``properties`` names,
``labels``) are copied untouched. What differs per model is in ``model_rules``.

Reason styles: parse-level errors mimic Google's wording, with the path in snake_case
(``Unknown name "X" at 'setup.generation_config': Cannot find field.``); semantic errors start with
"Request contains an invalid argument." and name the field in camelCase as our client spells it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from appliance.emulator.rejections import INVALID_ARGUMENT, ProtocolViolation, invalid
from appliance.emulator.shapes import CLIENT_MESSAGE, Enum, MapOf, Message, Repeated, Scalar, resolve

__all__ = [
    "CLIENT_MESSAGE_KINDS",
    "camel_to_snake",
    "decode_audio_blob",
    "decode_base64",
    "normalise_client_message",
    "parse_json_frame",
    "peek_setup_model",
    "snake_to_camel",
    "validate_function_names",
    "validate_realtime_input_shape",
]

CLIENT_MESSAGE_KINDS = ("setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate")

_SNAKE_PART = re.compile(r"_([a-z0-9])")
_CAMEL_PART = re.compile(r"([A-Z])")


def snake_to_camel(name: str) -> str:
    return _SNAKE_PART.sub(lambda m: m.group(1).upper(), name)


def camel_to_snake(name: str) -> str:
    return _CAMEL_PART.sub(lambda m: "_" + m.group(1).lower(), name)


def _preview(value: Any, limit: int = 24) -> str:
    """A short JSON rendering of an offending value, for close reasons that must stay under 123 bytes."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# Walking a value against the schema
# ----------------------------------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Walker:
    def __init__(self, version: str, reject_null: bool = False) -> None:
        self.version = version
        #: 3.1 and later close 1007 on a null field value (proto3 JSON would read it as "default")
        self.reject_null = reject_null

    def type_label(self, spec: Any) -> str:
        if isinstance(spec, (Message, Enum)):
            return f"type.googleapis.com/google.ai.generativelanguage.{self.version}.{spec.type_name}"
        if isinstance(spec, Scalar):
            return {"string": "TYPE_STRING", "bool": "TYPE_BOOL", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                    "float": "TYPE_FLOAT", "bytes": "TYPE_BYTES", "struct": "google.protobuf.Struct"}.get(
                        spec.kind, "google.protobuf.Value")
        return "TYPE_MESSAGE"

    def bad_value(self, path: str, spec: Any, value: Any) -> ProtocolViolation:
        return invalid(f"Invalid value at '{path}' ({self.type_label(spec)}), {_preview(value)}")

    def walk(self, value: Any, spec: Any, path: str) -> Any:
        spec = resolve(spec)
        if isinstance(spec, Message):
            return self.message(value, spec, path)
        if isinstance(spec, Repeated):
            if not isinstance(value, list):
                raise self.bad_value(path, resolve(spec.item), value)
            return [self.walk(item, spec.item, f"{path}[{i}]") for i, item in enumerate(value)]
        if isinstance(spec, MapOf):
            if not isinstance(value, dict):
                raise self.bad_value(path, spec, value)
            return {key: self.walk(item, spec.value, f'{path}["{key}"]') for key, item in value.items()}
        if isinstance(spec, Enum):
            if isinstance(value, str) and value in spec.values:
                return value
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            raise self.bad_value(path, spec, value)
        return self.scalar(value, spec, path)

    def message(self, value: Any, spec: Message, path: str) -> dict[str, Any]:
        if isinstance(value, list):
            where = path.rsplit(".", 1)
            parent, name = (where[0], where[1]) if len(where) == 2 else ("", where[0])
            at = f" at '{parent}'" if parent else ""
            raise invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: '
                          "Proto field is not repeating, cannot start list.")
        if not isinstance(value, dict):
            raise self.bad_value(path, spec, value)
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = snake_to_camel(raw_key)
            if key not in spec.fields:
                at = f" at '{path}'" if path else ""
                raise invalid(f'Invalid JSON payload received. Unknown name "{raw_key}"{at}: Cannot find field.')
            if key in out:
                raise invalid(f"Invalid JSON payload received. Duplicate field \"{raw_key}\""
                              f"{' at ' + repr(path) if path else ''} (given in both casings).")
            if item is None:
                if self.reject_null:
                    raise invalid(f"Invalid JSON payload received. null at '{_join(path, camel_to_snake(key))}'; "
                                  "leave the field out instead.")
                continue  # proto3 JSON: null means "default value"
            out[key] = self.walk(item, spec.fields[key], _join(path, camel_to_snake(key)))
        return out

    def check_free_form(self, value: Any, path: str) -> None:
        """Nulls inside free-form payloads (args, responses) count too on models that reject null."""
        if not self.reject_null:
            return
        stack: list[tuple[Any, str]] = [(value, path)]
        while stack:
            item, where = stack.pop()
            if item is None:
                raise invalid(f"Invalid JSON payload received. null at '{where}'; leave the field out instead.")
            if isinstance(item, dict):
                stack.extend((v, f'{where}["{k}"]') for k, v in item.items())
            elif isinstance(item, list):
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))

    def scalar(self, value: Any, spec: Scalar, path: str) -> Any:
        kind = spec.kind
        if kind == "any":
            self.check_free_form(value, path)
            return value
        if kind == "struct":
            if not isinstance(value, dict):
                raise self.bad_value(path, spec, value)
            self.check_free_form(value, path)
            return value
        if kind == "string":
            if not isinstance(value, str):
                raise self.bad_value(path, spec, value)
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.bad_value(path, spec, value)
            return value
        if kind in ("int32", "int64"):
            if isinstance(value, bool):
                raise self.bad_value(path, spec, value)
            if isinstance(value, int):
                number = value
            elif isinstance(value, float) and value.is_integer():
                number = int(value)
            elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                number = int(value)
            else:
                raise self.bad_value(path, spec, value)
            limit = 2**31 if kind == "int32" else 2**63
            if not -limit <= number < limit:
                raise self.bad_value(path, spec, value)
            return number
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.bad_value(path, spec, value)
            return value
        if kind == "bytes":
            if not isinstance(value, str) or decode_base64(value) is None:
                raise invalid(f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for {_preview(value)}")
            return value
        raise AssertionError(f"unknown scalar kind {kind}")  # pragma: no cover - schema bug


# ----------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------


def parse_json_frame(frame: str | bytes) -> Any:
    """Decode one client frame (text or binary). Raises 1007 for anything that is not JSON."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "the frame is not UTF-8"
        raise invalid(f"Invalid JSON payload received. {detail}.") from None


def peek_setup_model(message: Any) -> str | None:
    """The model id a (not yet validated) setup message names, without "models/"; None if it names none.

    Why: whether null values are accepted depends on the model, so the model is read before the walk.
    """
    if not isinstance(message, dict):
        return None
    setup = message.get("setup")
    model = setup.get("model") if isinstance(setup, dict) else None
    if not isinstance(model, str):
        return None
    return model[len("models/"):] if model.startswith("models/") else model


def normalise_client_message(message: Any, version: str = "v1beta",
                             reject_null: bool = False) -> tuple[str, dict[str, Any]]:
    """Check a whole client message against the schema; return (kind, camelCase body of that kind).

    ``reject_null``: close 1007 on any null value (3.1 and later) instead of reading it as the default.
    """
    if not isinstance(message, dict):
        raise invalid(f"Invalid JSON payload received. Expected a JSON object, got {type(message).__name__}.")
    walker = _Walker(version, reject_null)
    seen: list[str] = []
    for raw_key in message:
        key = snake_to_camel(raw_key)
        if key not in CLIENT_MESSAGE.fields:
            raise invalid(f'Invalid JSON payload received. Unknown name "{raw_key}": Cannot find field.')
        if seen:
            raise invalid(f"Invalid JSON payload received. Oneof field 'message_type' is already set "
                          f"({camel_to_snake(seen[0])}). Cannot set '{raw_key}'.")
        seen.append(key)
    if not seen:
        raise invalid("Invalid JSON payload received. The message is empty; it needs exactly one of "
                      "setup, clientContent, realtimeInput, toolResponse, contextUpdate.")
    normalised = walker.message(message, CLIENT_MESSAGE, "")
    kind = seen[0]
    body = normalised.get(kind)
    if body is None:  # {"realtimeInput": null}
        raise invalid(f"Invalid JSON payload received. '{camel_to_snake(kind)}' must be an object, not null.")
    return kind, body


def validate_realtime_input_shape(body: Mapping[str, Any]) -> str:
    """Emulator rule (the SDK enforces it too): one field per realtimeInput message. Returns that field."""
    fields = list(body)
    if len(fields) != 1:
        listed = ", ".join(fields) if fields else "none"
        raise invalid(f"realtimeInput takes exactly one field per message (emulator rule, like the SDK); "
                      f"got {listed}.")
    return fields[0]


_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")


def validate_function_names(tools: list[dict[str, Any]], where: str) -> set[str]:
    """Check declared function names like the real API does; return the set of declared names."""
    names: set[str] = set()
    for ti, tool in enumerate(tools):
        for fi, decl in enumerate(tool.get("functionDeclarations", [])):
            name = decl.get("name", "")
            field = f"{where}[{ti}].functionDeclarations[{fi}].name"
            if not _FUNCTION_NAME.fullmatch(name):
                raise invalid(f"{INVALID_ARGUMENT} {field}: invalid function name {_preview(name)}; start with a "
                              "letter or _, then letters, digits, _ . : -, max 64.")
            names.add(name)
    return names



# ----------------------------------------------------------------------------------------------------------
# Bytes and audio
# ----------------------------------------------------------------------------------------------------------

_B64_CHARS = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def decode_base64(text: str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not (proto3 JSON accepts all four). None if invalid."""
    stripped = text.strip()
    if not _B64_CHARS.fullmatch(stripped):
        return None
    core = stripped.rstrip("=")
    if len(core) % 4 == 1:
        return None
    core = core.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_PCM_MIME = re.compile(r"audio/pcm\s*(?:;\s*rate\s*=\s*(\d+)\s*)?", re.IGNORECASE)
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 48000


def decode_audio_blob(blob: Mapping[str, Any], field: str) -> tuple[bytes, int]:
    """Return (pcm s16le bytes, sample rate) of an audio Blob, or raise 1007 naming what is wrong."""
    mime = blob.get("mimeType")
    if not mime:
        raise invalid(f"{INVALID_ARGUMENT} {field}.mimeType is required (e.g. audio/pcm;rate=16000).")
    match = _PCM_MIME.fullmatch(mime.strip())
    if not match:
        raise invalid(f"{INVALID_ARGUMENT} {field}.mimeType {_preview(mime, 30)} unsupported; "
                      "use audio/pcm;rate=16000.")
    rate = int(match.group(1)) if match.group(1) else 16000
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise invalid(f"{INVALID_ARGUMENT} {field}.mimeType rate={rate} is out of range "
                      f"({MIN_INPUT_RATE}..{MAX_INPUT_RATE} Hz).")
    pcm = decode_base64(blob.get("data", ""))
    if pcm is None:  # already checked by the schema walk; kept for direct callers
        raise invalid(f"Invalid value at '{camel_to_snake(field)}.data' (TYPE_BYTES), Base64 decoding failed.")
    if len(pcm) % 2:
        raise invalid(f"{INVALID_ARGUMENT} {field}.data holds {len(pcm)} bytes; 16-bit PCM needs an even count.")
    return pcm, rate
