"""Qwen Code (`portal.qwen.ai`): the OpenAI-compatible DashScope endpoint behind Qwen Code's OAuth login."""
