"""The Qwen Code provider (`provider = "qwen"`): Qwen's OpenAI-compatible chat completions
(portal.qwen.ai) with the Qwen Code OAuth login, sent as Qwen Code sends them."""
