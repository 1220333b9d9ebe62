"""JSON Schema -> the Schema subset Gemini function declarations accept."""

from __future__ import annotations

import pytest

from llmbridge.providers.google.schema import function_parameters
from tests.fakes.code_assist_rules import Rejected, check_schema


def test_common_noise_is_dropped_and_types_uppercased():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "title": "Args",
        "properties": {
            "path": {"type": "string", "format": "uri", "minLength": 1, "examples": ["a"]},
            "when": {"type": "string", "format": "date-time"},
            "n": {"type": "integer", "format": "int32", "exclusiveMinimum": 0, "minimum": 1},
        },
        "required": ["path", "ghost"],
    }
    assert function_parameters(schema) == {
        "type": "OBJECT",
        "title": "Args",
        "properties": {
            "path": {"type": "STRING", "minLength": 1},
            "when": {"type": "STRING", "format": "date-time"},
            "n": {"type": "INTEGER", "format": "int32", "minimum": 1},
        },
        "required": ["path"],
    }


def test_refs_are_inlined_and_recursion_stops():
    schema = {
        "type": "object",
        "$defs": {
            "Node": {
                "type": "object",
                "description": "a node",
                "properties": {"name": {"type": "string"}, "child": {"$ref": "#/$defs/Node"}},
            }
        },
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    reduced = function_parameters(schema)
    root = reduced["properties"]["root"]
    assert root["type"] == "OBJECT" and root["description"] == "a node"
    assert root["properties"]["name"] == {"type": "STRING"}
    assert root["properties"]["child"]["type"] == "OBJECT" and "properties" not in root["properties"]["child"]
    assert "$defs" not in reduced


def test_nullable_unions_const_and_enums():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "maybe"},
            "c": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "d": {"const": "fixed"},
            "e": {"type": "integer", "enum": [1, 2, 3]},
            "f": {"enum": ["x", None]},
            "g": {
                "allOf": [
                    {"type": "object", "properties": {"p": {"type": "string"}}, "required": ["p"]},
                    {"properties": {"q": {"type": "boolean"}}},
                ]
            },
            "h": {"type": "array", "items": {"type": "object", "properties": {}}},
            "i": {"type": "object", "patternProperties": {".*": {"type": "string"}}},
        },
    }
    props = function_parameters(schema)["properties"]
    assert props["a"] == {"type": "STRING", "nullable": True}
    assert props["b"] == {"description": "maybe", "type": "INTEGER", "nullable": True}
    assert props["c"] == {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}
    assert props["d"] == {"type": "STRING", "enum": ["fixed"]}
    assert props["e"] == {"type": "INTEGER", "description": "One of: 1, 2, 3."}
    assert props["f"] == {"type": "STRING", "enum": ["x"], "nullable": True}
    assert props["g"]["properties"] == {"p": {"type": "STRING"}, "q": {"type": "BOOLEAN"}}
    assert props["g"]["required"] == ["p"]
    assert props["h"] == {"type": "ARRAY", "items": {"type": "OBJECT"}}
    assert props["i"] == {"type": "OBJECT"}


@pytest.mark.parametrize("schema", [None, {}, {"type": "object"}, {"type": "object", "properties": {}}])
def test_no_arguments_means_no_parameters(schema):
    assert function_parameters(schema) is None


def test_input_is_not_mutated():
    schema = {"type": "object", "properties": {"a": {"type": "string", "format": "uuid"}}}
    before = repr(schema)
    function_parameters(schema)
    assert repr(schema) == before


CLAUDE_CODE_LIKE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "todos": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "content": {"type": "string", "minLength": 1},
                    "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                    "id": {"type": "string", "format": "uuid"},
                },
                "required": ["content", "status", "id"],
            },
        },
        "options": {"$ref": "#/definitions/Opts"},
        "mode": {"anyOf": [{"const": "a"}, {"const": "b"}]},
    },
    "definitions": {"Opts": {"type": "object", "properties": {"deep": {"type": ["boolean", "null"], "default": None}}}},
    "required": ["todos"],
}


def test_reduced_schema_passes_the_strict_fake():
    reduced = function_parameters(CLAUDE_CODE_LIKE)
    check_schema(reduced, "parameters")  # raises Rejected when Gemini would refuse it
    with pytest.raises(Rejected):
        check_schema(CLAUDE_CODE_LIKE, "parameters")  # and the raw schema would be refused
