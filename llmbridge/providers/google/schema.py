"""Tool schemas for Gemini function declarations, in either of the two forms Gemini accepts.

Code Assist (the gemini-cli provider) gets `parametersJsonSchema`, the client's JSON Schema as it
is, because that is what the Gemini CLI itself sends (`json_schema_parameters`): a declaration in the
other form is a request the official client never makes. The public API (the gemini provider) gets
the reduced `parameters` form below.

Why `parameters` there and not `parametersJsonSchema`: `parameters` is the OpenAPI-3.0 `Schema` object that
every Gemini model accepts (Gemini 2.5, Gemini 3, Gemma; through Code Assist and the public API), and
its fields are documented field by field (Vertex AI / Gemini API `Schema` reference).
`parametersJsonSchema` accepts more of JSON Schema, but which keywords each backend model honours is
not documented, and a rejected schema fails the whole request. So we send `parameters` and translate
what JSON Schema says into it:

* `$ref` to `$defs`/`definitions` is inlined (a recursive reference becomes a plain OBJECT);
* `type: [X, "null"]`, `anyOf`/`oneOf` with a null branch -> `nullable: true`;
* `oneOf` -> `anyOf`; `allOf` is merged; `const` -> a one-value `enum`;
* `enum` must hold strings: a non-string enum moves into the description instead;
* `format` is kept only where Gemini accepts it (`enum`, `date-time` for strings; `float`/`double`,
  `int32`/`int64` for numbers); everything else not in `Schema` is dropped (`$schema`,
  `additionalProperties`, `exclusiveMinimum`, `examples`, `patternProperties`, `not`, `if`, ...);
* an OBJECT with no properties loses `properties`/`required` (Gemini rejects empty ones).
"""

from __future__ import annotations

import json
from typing import Any

_COPIED = (
    "title",
    "description",
    "default",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
)
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
Schema = dict[str, Any]
MAX_DEPTH = 48  # deeper nesting is cut: it only happens with self-referencing allOf chains


def function_parameters(schema: Schema | None) -> Schema | None:
    """The `parameters` value for a tool, or None when the tool takes no arguments."""
    if not isinstance(schema, dict):
        return None
    reduced = _Reducer(schema).reduce(schema)
    if not reduced.get("properties"):
        return None  # Gemini rejects an OBJECT root whose `properties` is empty
    reduced["type"] = "OBJECT"
    return reduced


def json_schema_parameters(schema: Schema) -> Schema:
    """`parametersJsonSchema`: the tool's JSON Schema as the client gave it, as the Gemini CLI sends
    its own tools' and its MCP servers' schemas (`$schema`, `additionalProperties` and lowercase types
    included); only a schema with no `type` at the root gets `type: object`."""
    return schema if "type" in schema else {"type": "object", **schema}


def response_json_schema(schema: Schema) -> Schema:
    """`responseJsonSchema` takes JSON Schema itself: drop only the meta keys it rejects."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id", "strict")}


class _Reducer:
    def __init__(self, root: Schema) -> None:
        self.defs: dict[str, Any] = {**(root.get("definitions") or {}), **(root.get("$defs") or {})}
        self.stack: list[str] = []  # $refs being inlined, to stop recursive schemas
        self.depth = 0

    def reduce(self, node: Any) -> Schema:
        if not isinstance(node, dict) or self.depth > MAX_DEPTH:
            return {}
        self.depth += 1
        try:
            return self._reduce(node)
        finally:
            self.depth -= 1

    def _reduce(self, node: Schema) -> Schema:
        if isinstance(node.get("$ref"), str):
            return self._inline_ref(node)
        if isinstance(node.get("allOf"), list):
            parts = [self._deref(p) for p in node["allOf"]]
            return self.reduce(_merge_all_of({**node, "allOf": parts}))
        out: Schema = {k: node[k] for k in _COPIED if k in node and _valid_copy(k, node[k])}
        nullable = self._set_type(node, out)
        self._set_enum(node, out)
        self._set_children(node, out)
        self._set_format(node, out)
        if nullable or node.get("nullable") is True:
            out["nullable"] = True
        return out

    def _inline_ref(self, node: Schema) -> Schema:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if name in self.stack or name not in self.defs:
            # Recursive or unresolvable: the model still sees an object and what the schema says of it.
            described = {k: v for k, v in siblings.items() if k == "description"}
            return {"type": "OBJECT", **self.reduce(described)}
        self.stack.append(name)
        try:
            return self.reduce({**self.defs[name], **siblings})
        finally:
            self.stack.pop()

    def _deref(self, node: Any) -> Any:
        """An allOf member that is a plain `$ref` is replaced by its definition before merging."""
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in self.defs and name not in self.stack:
                return {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def _set_type(self, node: Schema, out: Schema) -> bool:
        """Sets out["type"] (or out["anyOf"]); True when null is one of the allowed values."""
        kind = node.get("type")
        kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if isinstance(k, str)]
        nullable = "null" in kinds
        kinds = [k for k in kinds if k in _TYPES]
        union = node.get("anyOf") or node.get("oneOf")
        if isinstance(union, list):
            return self._set_union(union, out) or nullable
        if len(kinds) > 1:
            out["anyOf"] = [{"type": k.upper()} for k in kinds]
        elif kinds:
            out["type"] = kinds[0].upper()
        elif nullable:
            out["type"] = "STRING"  # a value that can only be null: the closest Gemini can say
        else:
            _infer_type(node, out)
        return nullable

    def _set_union(self, union: list[Any], out: Schema) -> bool:
        branches = [b for b in union if isinstance(b, dict)]
        nullable = any(b.get("type") == "null" for b in branches)
        reduced = [self.reduce(b) for b in branches if b.get("type") != "null"]
        if len(reduced) == 1:
            out.update({k: v for k, v in reduced[0].items() if k not in out})
        elif reduced:
            out["anyOf"] = reduced
        return nullable

    def _set_enum(self, node: Schema, out: Schema) -> None:
        values = [node["const"]] if "const" in node else node.get("enum")
        if not isinstance(values, list) or not values:
            return
        if None in values:
            out["nullable"] = True
            values = [v for v in values if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out["enum"] = values
            out.setdefault("type", "STRING")
        elif values:
            note = "One of: " + ", ".join(json.dumps(v) for v in values) + "."
            out["description"] = f"{out['description']} {note}" if out.get("description") else note

    def _set_children(self, node: Schema, out: Schema) -> None:
        props = node.get("properties")
        if isinstance(props, dict) and props:
            out["properties"] = {name: self.reduce(sub) for name, sub in props.items()}
            required = [r for r in node.get("required") or [] if r in props]
            if required:
                out["required"] = required
        if out.get("type") == "ARRAY" or "items" in node:
            items = node.get("items")
            out["items"] = self.reduce(items if isinstance(items, dict) else {})
        order = out.get("propertyOrdering")
        if order is not None and set(order) - set(out.get("properties", {})):
            del out["propertyOrdering"]

    def _set_format(self, node: Schema, out: Schema) -> None:
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = fmt


def _valid_copy(key: str, value: Any) -> bool:
    if key in ("title", "description", "pattern"):
        return isinstance(value, str)
    if key == "propertyOrdering":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if key == "default":
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _infer_type(node: Schema, out: Schema) -> None:
    """JSON Schema lets `type` be implied; Gemini wants it spelled out where it can be."""
    if "properties" in node:
        out["type"] = "OBJECT"
    elif "items" in node:
        out["type"] = "ARRAY"


def _merge_all_of(node: Schema) -> Schema:
    """allOf as one schema: properties and required are unioned, other keys the first one wins."""
    merged: Schema = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf") or []:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**value, **merged.get("properties", {})}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged
