"""What the fake Code Assist server accepts: the request shapes of the real one, strictly.

Each check raises `Rejected(status, google_status, message)`; messages imitate Google's wording so that
the classifier and the user-facing errors are exercised with realistic text.
"""

from __future__ import annotations

from typing import Any

ENVELOPE = {"model", "project", "user_prompt_id", "request", "enabled_credit_types"}
REQUEST = {
    "contents",
    "systemInstruction",
    "cachedContent",
    "tools",
    "toolConfig",
    "labels",
    "safetySettings",
    "generationConfig",
    "session_id",
}
CONTENT = {"role", "parts"}
PART = {
    "text",
    "thought",
    "thoughtSignature",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
}
FUNCTION_CALL = {"name", "args", "id"}
FUNCTION_RESPONSE = {"name", "response", "id", "parts", "willContinue", "scheduling"}
INLINE_DATA = {"mimeType", "data"}
GENERATION_CONFIG = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
    "routingConfig",
    "modelSelectionConfig",
    "thinkingConfig",
    "responseLogprobs",
    "logprobs",
}
THINKING_CONFIG = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
TOOL = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext"}
DECLARATION = {
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
}
SCHEMA = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "default",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "properties",
    "propertyOrdering",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "minimum",
    "maximum",
}
SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
TOOL_CONFIG = {"functionCallingConfig"}
CALLING_CONFIG = {"mode", "allowedFunctionNames"}
SYSTEM = {"role", "parts"}
COUNT_TOKENS = {"request"}
RETRIEVE_USER_QUOTA = {"project", "userAgent"}
LIST_EXPERIMENTS = {"project", "metadata"}
COUNT_TOKENS_REQUEST = {"model", "contents", "systemInstruction", "tools", "generationConfig"}
THINKING_LEVELS = {"MINIMAL", "LOW", "MEDIUM", "HIGH"}
SIGNATURE_MESSAGE = (
    "Function call is missing a thought_signature in functionCall parts. This is required "
    "for tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {pos}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more "
    "details."
)


SKIP_SIGNATURE = "skip_thought_signature_validator"  # accepted by Gemini 3 in place of a real one
INVALID_SIGNATURE = "Unable to submit request because Thought signature is not valid.."
Ledger = dict[str, set[str]]  # thoughtSignature -> the kinds of part it was issued on


class Rejected(Exception):
    def __init__(self, status: int, google_status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.google_status = google_status
        self.message = message


def invalid(message: str) -> Rejected:
    return Rejected(400, "INVALID_ARGUMENT", message)


def known(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    """`obj` as a dict whose keys are all in `allowed`, else Google's unknown-name error."""
    if not isinstance(obj, dict):
        raise invalid(f"Invalid value at '{where}', expected an object")
    for key in obj:
        if key not in allowed:
            raise invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.")
    return obj


def check_generate(body: Any, gemini3: bool) -> None:
    envelope = known(body, ENVELOPE, "")
    if not isinstance(envelope.get("model"), str):
        raise invalid("model is required")
    request = known(envelope.get("request"), REQUEST, "request")
    check_contents(request.get("contents"), gemini3)
    if "systemInstruction" in request:
        system = known(request["systemInstruction"], SYSTEM, "request.system_instruction")
        for i, part in enumerate(system.get("parts") or []):
            check_part(part, f"request.system_instruction.parts[{i}]")
    for i, tool in enumerate(request.get("tools") or []):
        check_tool(tool, f"request.tools[{i}]")
    if "toolConfig" in request:
        check_tool_config(request["toolConfig"])
    if "generationConfig" in request:
        check_generation(request["generationConfig"], envelope["model"])


def check_contents(contents: Any, gemini3: bool) -> None:
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
    previous: dict[str, Any] | None = None
    for i, content in enumerate(contents):
        where = f"request.contents[{i}]"
        known(content, CONTENT, where)
        if content.get("role") not in ("user", "model"):
            raise invalid(f"Please use a valid role: user, model. (got {content.get('role')!r} at {where})")
        if not content.get("parts"):
            raise invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
        if previous is not None and previous["role"] == content["role"]:
            raise invalid("Please ensure that multiturn requests alternate between user and model.")
        for j, part in enumerate(content["parts"]):
            check_part(part, f"{where}.parts[{j}]")
        check_function_responses(content, previous)
        if gemini3 and content["role"] == "model":
            check_signature(content, i)
        previous = content


def check_part(part: Any, where: str) -> None:
    known(part, PART, where)
    data = [k for k in ("text", "inlineData", "fileData", "functionCall", "functionResponse") if k in part]
    if len(data) != 1:
        raise invalid(f"Invalid value at '{where}': a part must hold exactly one kind of data, got {data}")
    if "functionCall" in part:
        call = known(part["functionCall"], FUNCTION_CALL, f"{where}.function_call")
        if not call.get("name") or not isinstance(call.get("args", {}), dict):
            raise invalid(f"* {where}.function_call: name must be set and args must be an object")
    if "functionResponse" in part:
        response = known(part["functionResponse"], FUNCTION_RESPONSE, f"{where}.function_response")
        if not response.get("name") or not isinstance(response.get("response"), dict):
            raise invalid(f"* {where}.function_response: name and response (an object) are required")
    if "inlineData" in part:
        known(part["inlineData"], INLINE_DATA, f"{where}.inline_data")
    if "thought" in part and not isinstance(part["thought"], bool):
        raise invalid(f"Invalid value at '{where}.thought' (TYPE_BOOL)")


def check_function_responses(content: dict[str, Any], previous: dict[str, Any] | None) -> None:
    responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
    if not responses:
        return
    calls = [p["functionCall"] for p in (previous or {}).get("parts", []) if "functionCall" in p]
    if not calls:
        raise invalid("Please ensure that function response turn comes immediately after a function call turn.")
    if len(responses) != len(calls):
        raise invalid(
            "Please ensure that the number of function response parts is equal to the number of "
            "function call parts of the function call turn."
        )
    for response in responses:
        if not any(_pairs(call, response) for call in calls):
            raise invalid(
                f"function response {response.get('name')!r} does not match any function call of the previous turn."
            )


def _pairs(call: dict[str, Any], response: dict[str, Any]) -> bool:
    if call.get("name") != response.get("name"):
        return False
    return not (call.get("id") and response.get("id")) or call["id"] == response["id"]


def check_signature(content: dict[str, Any], index: int) -> None:
    for j, part in enumerate(content["parts"]):
        if "functionCall" in part:
            if not part.get("thoughtSignature"):
                name = part["functionCall"].get("name")
                raise invalid(SIGNATURE_MESSAGE.format(name=name, pos=f"{index}.{j}"))
            return


def check_tool(tool: Any, where: str) -> None:
    known(tool, TOOL, where)
    for i, declaration in enumerate(tool.get("functionDeclarations") or []):
        spot = f"{where}.function_declarations[{i}]"
        known(declaration, DECLARATION, spot)
        if "parameters" in declaration and "parametersJsonSchema" in declaration:
            raise invalid(f"* {spot}: parameters and parameters_json_schema are mutually exclusive")
        if "parameters" in declaration:
            check_schema(declaration["parameters"], f"{spot}.parameters")
        if "parametersJsonSchema" in declaration:
            check_json_schema(declaration["parametersJsonSchema"], f"{spot}.parameters_json_schema")


JSON_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


def check_json_schema(schema: Any, where: str) -> None:
    """`parametersJsonSchema` is JSON Schema (what the Gemini CLI sends for its own and its MCP tools:
    lowercase types, `$schema`, `additionalProperties`, `$defs`); an OpenAPI `Schema` (`OBJECT`) or
    anything that is not an object is refused."""
    if not isinstance(schema, (dict, bool)):
        raise invalid(f"Invalid value at '{where}' (google.protobuf.Value): a JSON Schema must be an object")
    if isinstance(schema, bool):
        return
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in JSON_SCHEMA_TYPES:
            raise invalid(f"* {where}.type: invalid JSON Schema type {kind!r}")
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_json_schema(sub, f"{where}.{key}[{name}]")
    if isinstance(schema.get("items"), (dict, bool)):
        check_json_schema(schema["items"], f"{where}.items")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or []):
            check_json_schema(sub, f"{where}.{key}[{i}]")


def check_schema(schema: Any, where: str) -> None:
    known(schema, SCHEMA, where)
    kind = schema.get("type")
    if kind is not None and kind not in SCHEMA_TYPES:
        raise invalid(
            f"Invalid value at '{where}.type' (type.googleapis.com/google.cloud.aiplatform.v1beta1.Type), \"{kind}\""
        )
    if kind == "OBJECT" and "properties" in schema and not schema["properties"]:
        raise invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type\n")
    if "enum" in schema and not all(isinstance(v, str) for v in schema["enum"]):
        raise invalid(f"Invalid value at '{where}.enum' (TYPE_STRING)")
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or []):
        check_schema(sub, f"{where}.any_of[{i}]")


def check_tool_config(config: Any) -> None:
    calling = known(
        known(config, TOOL_CONFIG, "request.tool_config").get("functionCallingConfig", {}),
        CALLING_CONFIG,
        "request.tool_config.function_calling_config",
    )
    if calling.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise invalid(f"Invalid value at 'request.tool_config.function_calling_config.mode', \"{calling.get('mode')}\"")
    if calling.get("allowedFunctionNames") and calling.get("mode") != "ANY":
        raise invalid("allowed_function_names should be set only when the mode is ANY.")


def check_generation(config: Any, model: str) -> None:
    known(config, GENERATION_CONFIG, "request.generation_config")
    if len(config.get("stopSequences") or []) > 5:
        raise invalid("stop_sequences must have at most 5 entries")
    if "thinkingConfig" not in config:
        return
    thinking = known(config["thinkingConfig"], THINKING_CONFIG, "request.generation_config.thinking_config")
    if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
        raise invalid("You can only set only one of thinking budget and thinking level.")
    if "thinkingLevel" in thinking and (
        not model.startswith("gemini-3") or thinking["thinkingLevel"] not in THINKING_LEVELS
    ):
        raise invalid("Thinking level is not supported for this model.")
    if thinking.get("thinkingBudget") == 0 and (model.startswith("gemini-3") or "pro" in model):
        raise invalid("Budget 0 is invalid. This model only works in thinking mode.")


def check_count_tokens(body: Any) -> None:
    request = known(known(body, COUNT_TOKENS, "").get("request"), COUNT_TOKENS_REQUEST, "request")
    if not str(request.get("model", "")).startswith("models/"):
        raise invalid("model must be of the form models/{model}")
    check_contents(request.get("contents"), gemini3=False)


# --- thought signatures ----------------------------------------------------------------------------


def part_kind(part: dict[str, Any]) -> str:
    """What a signature is bound to: a function call (by name), a thought or a text part."""
    if "functionCall" in part:
        return f"functionCall:{part['functionCall'].get('name')}"
    return "thought" if part.get("thought") else "text"


def issue_signatures(ledger: Ledger, parts: list[Any]) -> None:
    """Remember every thoughtSignature a reply hands out, and on which kind of part."""
    for part in parts:
        if isinstance(part, dict) and part.get("thoughtSignature"):
            ledger.setdefault(part["thoughtSignature"], set()).add(part_kind(part))


def check_signatures(contents: Any, ledger: Ledger, known_only: bool = False, message: str = INVALID_SIGNATURE) -> None:
    """Gemini validates the signatures it issued: one that comes back must be in a model turn, on the
    kind of part it came on (a function call's on a call of that function). With `known_only`, a
    signature this server never issued (another provider's, a made-up one) is refused too, as the real
    service refuses what it cannot decrypt."""
    for content in contents or []:
        for part in content.get("parts") or []:
            signature = part.get("thoughtSignature")
            if not signature or signature == SKIP_SIGNATURE:
                continue
            kinds = ledger.get(signature)
            if kinds is None:
                if known_only:
                    raise invalid(message)
                continue
            if content.get("role") != "model" or part_kind(part) not in kinds:
                raise invalid(message)
