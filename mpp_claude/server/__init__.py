"""The reference MPP server: a paid, OpenAI-compatible proxy to Anthropic (Starlette)."""
