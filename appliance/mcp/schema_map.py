"""An MCP tool's JSON Schema as a Live API function declaration, and names the API accepts.

The Live API takes an OpenAPI subset: upper-case `type`, `properties`, `required`, `items`,
`enum` (strings), `description`, `nullable`, `format`, `minimum`/`maximum`,
`minItems`/`maxItems`.  MCP servers send full JSON Schema, so this module keeps what the
API understands and drops the rest:

- `$ref` into `$defs`/`definitions` is inlined (a cycle or an outside reference is not);
- `anyOf`/`oneOf` with a null branch becomes `nullable`; otherwise the first branch that
  maps is kept, the one most servers list as the usual form (Home Assistant writes "a
  name, or a list of names" with the string first);
- a single-branch `allOf` (what pydantic writes around a described `$ref`) is unwrapped;
- an enum of numbers is described in words, since the API's enums are strings;
- an object property without a usable schema or with a name the API refuses is dropped,
  and the tool is refused only when such a property is required;
- nesting deeper than `MAX_DEPTH` and schemas over `MAX_NODES` are cut the same way.

Descriptions are cut to `MAX_DESCRIPTION` characters (`MAX_PROPERTY_DESCRIPTION` inside
the schema) on one line, because every declaration costs tokens in every session.
Pure functions, standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MAX_NODES",
    "MAX_PROPERTY_DESCRIPTION",
    "Mapped",
    "Unmappable",
    "assign_names",
    "function_name",
    "map_parameters",
    "short_description",
]

#: the strictest of the published rules for a function name: start with a letter or _,
#: then letters, digits, _ and -, at most 63 characters in all
MAX_NAME = 63
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: a parameter name: start with a letter or _, then letters, digits and _, at most 64
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_DESCRIPTION = 200
MAX_PROPERTY_DESCRIPTION = 120
MAX_DEPTH = 5
MAX_NODES = 200
_MAX_ENUM = 100
_MAX_NOTES = 20
_MAX_ENUM_TEXT = 100

_TYPES = {
    "string": "STRING",
    "integer": "INTEGER",
    "number": "NUMBER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
#: `format` values the API documents for each type
_FORMATS = {
    "STRING": {"date-time", "date", "time", "email", "byte", "password"},
    "INTEGER": {"int32", "int64"},
    "NUMBER": {"float", "double"},
}


class Unmappable(ValueError):
    """The tool's schema cannot be said in the API's subset; the message says why, in one line."""


@dataclass(frozen=True)
class Mapped:
    """A tool's `parameters` (None: it takes no arguments) and what was left out of it."""

    parameters: dict[str, Any] | None
    dropped: tuple[str, ...] = ()


@dataclass
class _Walk:
    """State shared by one schema's walk: the root (for references), a node budget, notes."""

    root: Mapping[str, Any]
    nodes: int = 0
    dropped: list[str] = field(default_factory=list)


def map_parameters(input_schema: Any) -> Mapped:
    """The declaration's `parameters` for an MCP `inputSchema`, or Unmappable.

    A schema without properties gives None: the API refuses an OBJECT with no properties,
    so a declaration for a tool without arguments has no `parameters` at all.
    """
    if input_schema is None:
        return Mapped(None)
    if not isinstance(input_schema, Mapping):
        raise Unmappable("its input schema is not a JSON object")
    walk = _Walk(root=input_schema)
    root, refs = _resolve(input_schema, walk, ())
    kind = root.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise Unmappable(f"its input schema is {_show(kind)}, not an object")
    if not root.get("properties"):
        return Mapped(None)
    mapped = _object(root, "", walk, 0, refs)
    return Mapped(mapped, tuple(walk.dropped[:_MAX_NOTES]))


def short_description(text: Any, limit: int = MAX_DESCRIPTION) -> str:
    """One line of at most `limit` characters: whole sentences where they fit, else whole words."""
    if not isinstance(text, str):
        return ""
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end >= limit // 2:
        return cut[: sentence_end + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip(" ,;:") + "…"


def function_name(name: str) -> str:
    """`name` made into a valid function name (unsafe characters become _, cut to MAX_NAME)."""
    cleaned = _NAME_UNSAFE.sub("_", name).strip("_") or "tool"
    if not cleaned[0].isalpha():
        cleaned = "_" + cleaned
    return cleaned[:MAX_NAME]


def assign_names(tools: Sequence[tuple[str, str]], reserved: Collection[str] = ()) -> dict[tuple[str, str], str]:
    """A unique declared name for each (server, tool) pair, in a stable order.

    A tool keeps its own (cleaned) name unless another server's tool, or a name in
    `reserved` (the device's own tools), has it too; then every holder of that name gets
    its server's name in front, "home_HassTurnOn".  A clash left after that (a server with
    two tools that clean to one name) takes a number.
    """
    base = {pair: function_name(pair[1]) for pair in tools}
    holders: dict[str, int] = {}
    for name in base.values():
        holders[name] = holders.get(name, 0) + 1
    taken = set(reserved)
    names: dict[tuple[str, str], str] = {}
    for pair in tools:
        plain = base[pair]
        wanted = plain if holders[plain] == 1 and plain not in taken else function_name(f"{pair[0]}_{plain}")
        name, number = wanted, 2
        while name in taken:
            suffix = f"_{number}"
            name = wanted[: MAX_NAME - len(suffix)] + suffix
            number += 1
        taken.add(name)
        names[pair] = name
    return names


def is_function_name(name: str) -> bool:
    return bool(_FUNCTION_NAME.fullmatch(name))


# --------------------------------------------------------------------------- the walk


def _node(schema: Any, path: str, walk: _Walk, depth: int, refs: tuple[str, ...]) -> dict[str, Any] | None:
    """One schema node mapped, or None when it cannot be (the caller drops or refuses it).

    `refs` are the references already followed on the way here, so a recursive
    definition ends instead of unrolling until the depth limit.
    """
    if not isinstance(schema, Mapping):
        return None
    walk.nodes += 1
    if walk.nodes > MAX_NODES:
        if walk.nodes == MAX_NODES + 1:  # said once; everything after it goes too
            walk.dropped.append(f"{path} and what follows: the schema is too large")
        return None
    if depth > MAX_DEPTH:
        walk.dropped.append(f"{path}: nested too deep")
        return None
    try:
        schema, refs = _resolve(schema, walk, refs)
    except Unmappable as exc:
        walk.dropped.append(f"{path}: {exc}")
        return None
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _union(schema, key, path, walk, depth, refs)
    kind, nullable = _type_of(schema)
    if kind is None:
        walk.dropped.append(f"{path}: no type the API knows")
        return None
    if kind == "OBJECT":
        out = _object(schema, path, walk, depth, refs)
    elif kind == "ARRAY":
        out = _array(schema, path, walk, depth, refs)
    else:
        out = _scalar(schema, kind)
    if out is not None and (nullable or schema.get("nullable") is True):
        out["nullable"] = True
    return out


def _resolve(
    schema: Mapping[str, Any], walk: _Walk, refs: tuple[str, ...]
) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """`schema` with a local `$ref` and a one-branch `allOf` replaced by what they point at.

    Keys written beside the reference (a description) win over the target's.
    """
    while True:
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
            schema = {**all_of[0], **{k: v for k, v in schema.items() if k != "allOf"}}
            continue
        ref = schema.get("$ref")
        if ref is None:
            return schema, refs
        if not isinstance(ref, str):
            raise Unmappable("has a reference that is not a string")
        if ref in refs:
            raise Unmappable("refers to itself")
        refs = (*refs, ref)
        schema = {**_lookup(walk.root, ref), **{k: v for k, v in schema.items() if k != "$ref"}}


def _lookup(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    prefix = next((p for p in ("#/$defs/", "#/definitions/") if ref.startswith(p)), None)
    if prefix is None:
        raise Unmappable(f"refers outside the schema ({_show(ref)})")
    table = root.get(prefix[2:-1])
    target = table.get(ref[len(prefix):]) if isinstance(table, Mapping) else None
    if not isinstance(target, Mapping):
        raise Unmappable(f"refers to a missing definition ({_show(ref)})")
    return target


def _union(
    schema: Mapping[str, Any], key: str, path: str, walk: _Walk, depth: int, refs: tuple[str, ...]
) -> dict[str, Any] | None:
    """`anyOf`/`oneOf`: the first branch that maps, nullable when one branch is null."""
    branches = [b for b in schema[key] if isinstance(b, Mapping)]
    nullable = any(b.get("type") == "null" for b in branches)
    beside = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
    for branch in branches:
        if branch.get("type") == "null":
            continue
        trial = _Walk(root=walk.root, nodes=walk.nodes)
        out = _node({**branch, **beside}, path, trial, depth, refs)
        if out is not None:
            walk.nodes = trial.nodes
            walk.dropped.extend(trial.dropped)
            if nullable:
                out["nullable"] = True
            return out
    walk.dropped.append(f"{path}: no branch of {key} can be declared")
    return None


def _type_of(schema: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The API type name and whether null is allowed too; a missing type is guessed from the keys."""
    raw = schema.get("type")
    null = False
    if isinstance(raw, list):
        null = "null" in raw
        raw = next((t for t in raw if t != "null"), None)
    if raw is None:
        if "properties" in schema:
            raw = "object"
        elif "items" in schema:
            raw = "array"
        elif isinstance(schema.get("enum"), list) and all(isinstance(v, str) for v in schema["enum"]):
            raw = "string"
    return (_TYPES.get(raw) if isinstance(raw, str) else None), null


def _object(
    schema: Mapping[str, Any], path: str, walk: _Walk, depth: int, refs: tuple[str, ...]
) -> dict[str, Any] | None:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        walk.dropped.append(f"{path or 'the schema'}: an object with no properties")
        return None
    raw_required = schema.get("required")
    required = [r for r in raw_required if isinstance(r, str)] if isinstance(raw_required, list) else []
    kept: dict[str, Any] = {}
    for name, sub in properties.items():
        where = f"{path}.{name}" if path else str(name)
        mapped = None
        if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
            walk.dropped.append(f"{_show(where)}: a name the API does not accept")
        else:
            mapped = _node(sub, where, walk, depth + 1, refs)
        if mapped is None:
            if name in required:
                raise Unmappable(f"its required argument {_show(where)} cannot be declared")
            continue
        kept[name] = mapped
    if not kept:
        return None
    out: dict[str, Any] = {"type": "OBJECT", "properties": kept}
    still_required = [r for r in dict.fromkeys(required) if r in kept]
    if still_required:
        out["required"] = still_required
    if path:  # the root's text is the tool's description, declared apart
        _describe(out, schema)
    return out


def _array(
    schema: Mapping[str, Any], path: str, walk: _Walk, depth: int, refs: tuple[str, ...]
) -> dict[str, Any] | None:
    items = _node(schema.get("items"), f"{path}[]", walk, depth + 1, refs)
    if items is None:
        walk.dropped.append(f"{path}: a list whose items cannot be declared")
        return None
    out: dict[str, Any] = {"type": "ARRAY", "items": items}
    for key in ("minItems", "maxItems"):
        value = schema.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value
    _describe(out, schema)
    return out


def _scalar(schema: Mapping[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    extra = ""
    enum = schema.get("enum")
    if "const" in schema and enum is None:
        enum = [schema["const"]]
    if isinstance(enum, list) and enum:
        values = [v for v in enum if v is not None][:_MAX_ENUM]
        if kind == "STRING" and all(isinstance(v, str) for v in values):
            out["enum"] = values
        elif values:
            listed = ", ".join(json.dumps(v, ensure_ascii=False) for v in values)
            extra = f"One of: {listed if len(listed) <= _MAX_ENUM_TEXT else listed[:_MAX_ENUM_TEXT] + '…'}"
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(kind, ()):
        out["format"] = fmt
    if kind in ("INTEGER", "NUMBER"):
        for key in ("minimum", "maximum"):
            value = schema.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = value
    _describe(out, schema, extra=extra)
    return out


def _describe(out: dict[str, Any], schema: Mapping[str, Any], *, extra: str = "") -> None:
    """The node's description, cut short, with `extra` (allowed values) after it.

    Titles are left out: the ones generators write ("Area") only repeat the name.
    """
    text = schema.get("description")
    parts = [p.strip().rstrip(".") + "." for p in (text if isinstance(text, str) else "", extra) if p.strip()]
    line = short_description(" ".join(parts), MAX_PROPERTY_DESCRIPTION)
    if line:
        out["description"] = line


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
