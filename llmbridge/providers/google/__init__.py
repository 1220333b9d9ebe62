"""Google's Gemini wire format, shared by the `gemini-cli` and `gemini` providers.

Not a provider: no `Provider` subclass lives here and `PROVIDERS` names no module of it. Both Google
providers send the same `GenerateContentRequest` and read the same `GenerateContentResponse` stream
and google.rpc.Status errors; each keeps only its envelope, its authentication and its own errors.

    models    which Gemini models think how (levels, budgets), their common limits
    schema    client JSON Schema -> the `Schema` subset function declarations accept
    request   canonical ChatRequest -> GenerateContentRequest (contents, tools, config, signatures)
    decoder   GenerateContentResponse SSE -> canonical stream events
    errors    google.rpc.Status bodies -> the bridge's error tree
"""
