"""Pure OpenAI Chat Completions <-> Anthropic Messages conversion (no I/O).

Spec: shared/docs/openai-anthropic-conversion.md.  The server calls:

* ``chat_request_to_messages(body, thinking_store=..., now=...)`` -> ``MessagesRequest``
  (``.body`` is the upstream JSON, always ``stream: true``);
* ``SseParser`` on the upstream bytes, then either ``StreamTranslator`` (client streams) or
  ``MessageAccumulator`` + ``message_to_chat_completion`` (client wants JSON);
* ``anthropic_error_to_openai(status, body, headers)`` for upstream errors.

Every refusal is a ``mpp_claude.errors.ConversionError`` carrying its OpenAI error shape.
"""

from __future__ import annotations

from .accumulate import MessageAccumulator
from .error_map import anthropic_error_to_openai, error_frame, stream_error_to_openai
from .models import MODELS, PRICES, RETIRED, ModelInfo, ModelPrice, price_for, resolve_model
from .request import JSON_OBJECT_INSTRUCTION, chat_request_to_messages
from .response import (
    continue_after_pause,
    finish_reason,
    map_usage,
    merge_paused,
    message_to_chat_completion,
)
from .sse import DONE_FRAME, SseEvent, SseParser, encode_frame
from .stream import StreamTranslator
from .thinking import ThinkingStore
from .types import DEFAULT_MAX_TOKENS, AnthropicRequest, ConvertOptions, MessagesRequest

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DONE_FRAME",
    "JSON_OBJECT_INSTRUCTION",
    "MODELS",
    "PRICES",
    "RETIRED",
    "AnthropicRequest",
    "ConvertOptions",
    "MessageAccumulator",
    "MessagesRequest",
    "ModelInfo",
    "ModelPrice",
    "SseEvent",
    "SseParser",
    "StreamTranslator",
    "ThinkingStore",
    "anthropic_error_to_openai",
    "chat_request_to_messages",
    "continue_after_pause",
    "encode_frame",
    "error_frame",
    "finish_reason",
    "map_usage",
    "merge_paused",
    "message_to_chat_completion",
    "price_for",
    "resolve_model",
    "stream_error_to_openai",
]
