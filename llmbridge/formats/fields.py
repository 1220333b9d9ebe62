"""Typed getters for reading client JSON, each naming the field at fault.

Paths are dotted with list indexes, as Anthropic's own errors name them: `messages.2.content.0.type`.
Unknown fields are never an error here (tolerant reader); a wrong type or a missing required field is
an `InvalidRequest` whose `param` is the path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, cast, overload

from pydantic import ValidationError

from llmbridge.errors import InvalidRequest

T = TypeVar("T")

_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_json_text(text: str) -> Any:
    """JSON a client sent inside a string (tool-call arguments). ValueError for text that is not JSON
    (NaN and Infinity included: Python reads them, JSON has no such values, and no upstream would take
    them back) or nests too deeply to parse."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def at(path: str, key: str | int) -> str:
    """The path of a child field: at("messages", 2) == "messages.2"."""
    return f"{path}.{key}" if path else str(key)


def invalid(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}", param=path)


def invalid_from_validation(error: ValidationError) -> InvalidRequest:
    """A 400 naming the first field pydantic refused (the message without pydantic's decoration)."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or error.title
    return InvalidRequest(f"{where}: {first['msg']}", param=where)


@contextmanager
def validation_as_invalid() -> Iterator[None]:
    """Safety net around building canonical models from client JSON: a value the typed getters let
    through and pydantic refuses is still the client's 400, never a 500."""
    try:
        yield
    except ValidationError as error:
        raise invalid_from_validation(error) from None


def _expect(value: Any, path: str, kind: type[T]) -> T:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return cast(T, float(value))
    if not ok:
        raise invalid(path, f"expected {_JSON_NAMES[kind]}")
    return cast(T, value)


def root(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def as_dict(value: Any, path: str) -> dict[str, Any]:
    return cast(dict[str, Any], _expect(value, path, dict))


def as_list(value: Any, path: str) -> list[Any]:
    return _expect(value, path, list)


@overload
def field(obj: dict[str, Any], key: str, path: str, kind: type[T], *, required: Literal[True]) -> T: ...
@overload
def field(obj: dict[str, Any], key: str, path: str, kind: type[T], *, required: bool = False) -> T | None: ...
def field(obj: dict[str, Any], key: str, path: str, kind: type[T], *, required: bool = False) -> T | None:
    """obj[key] checked against `kind`; None when absent or null (400 when `required`)."""
    value = obj.get(key)
    where = at(path, key)
    if value is None:
        if required:
            raise invalid(where, "field required")
        return None
    return _expect(value, where, kind)


def get_str(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    return field(obj, key, path, str, required=required)


def get_int(
    obj: dict[str, Any], key: str, path: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    value = obj.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON numbers written 1024.0 by some clients
        obj = {key: value}
    number = field(obj, key, path, int, required=required)
    if number is not None and minimum is not None and number < minimum:
        raise invalid(at(path, key), f"must be at least {minimum}")
    return number


def get_float(obj: dict[str, Any], key: str, path: str) -> float | None:
    return field(obj, key, path, float)


def get_bool(obj: dict[str, Any], key: str, path: str) -> bool | None:
    return field(obj, key, path, bool)


def get_str_list(obj: dict[str, Any], key: str, path: str) -> list[str]:
    items = field(obj, key, path, list) or []
    return [_expect(item, at(at(path, key), i), str) for i, item in enumerate(items)]
