"""Shapes exchanged with the server: the mapped request, the options, the outbound TypedDicts.

The Anthropic request body is a ``TypedDict`` (style.md: outbound parameters are TypedDicts);
``MessagesRequest`` wraps it with what the server needs to answer the client (stream flags,
the resolved model, the ``x-proxy-*`` header lists and the id maps for the way back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from typing_extensions import Required

from .models import ModelInfo

__all__ = [
    "DEFAULT_ANSWER_ROOM",
    "DEFAULT_MAX_TOKENS",
    "AnthropicRequest",
    "ConvertOptions",
    "MessagesRequest",
]

#: Default ``max_tokens`` when the client sends no limit: ``min(model max output, this)`` (§1.4).
DEFAULT_MAX_TOKENS = 16_384
#: Room for the answer added on top of a thinking budget when the client gave no limit (§1.6).
DEFAULT_ANSWER_ROOM = 8_192

Block = dict[str, Any]


class AnthropicMessage(TypedDict):
    role: Literal["user", "assistant"]
    content: list[Block]


class AnthropicRequest(TypedDict, total=False):
    """The JSON body for ``POST /v1/messages`` (A4 ``message_create_params``)."""

    model: Required[str]
    messages: Required[list[AnthropicMessage]]
    max_tokens: Required[int]
    stream: Required[bool]
    system: list[Block]
    tools: list[Block]
    tool_choice: Block
    temperature: float
    top_p: float
    top_k: int
    stop_sequences: list[str]
    metadata: dict[str, str]
    thinking: Block
    output_config: Block
    cache_control: Block


@dataclass(frozen=True)
class ConvertOptions:
    """Deployment switches for the mapping; every default is the spec's recommendation.

    Attributes:
        default_max_tokens: cap of the default ``max_tokens`` (the model max wins if smaller).
        answer_room: tokens added above a thinking budget when the client sent no limit.
        strict_mode: turn value-changing DROPs (sampling, clamping) into 400s (§1 conventions).
        lenient_tool_choice: downgrade a forced ``tool_choice`` the model refuses to ``auto``
            (header ``x-proxy-degraded-params``) instead of answering 400 (T22).
        expose_reasoning: return thinking text as ``message.reasoning_content`` /
            ``delta.reasoning_content`` (T56).
        expose_refusal: put ``stop_details.explanation`` into ``message.refusal`` (§2.2).
        web_search: map ``web_search_options`` to Anthropic's hosted web search tool (costs money).
        web_search_tool: the tool version sent for web search.
        auto_cache: set Anthropic's top-level ``cache_control: {type: ephemeral}`` so OpenAI clients
            get prompt-cache hits without changes (§1.5; cache writes cost 1.25x input).
        models: capability table to use instead of ``models.MODELS`` (e.g. refreshed at start-up).
    """

    default_max_tokens: int = DEFAULT_MAX_TOKENS
    answer_room: int = DEFAULT_ANSWER_ROOM
    strict_mode: bool = False
    lenient_tool_choice: bool = False
    expose_reasoning: bool = False
    expose_refusal: bool = False
    web_search: bool = False
    web_search_tool: str = "web_search_20250305"
    auto_cache: bool = False
    models: Mapping[str, ModelInfo] | None = None


@dataclass
class MessagesRequest:
    """One OpenAI request mapped to Anthropic, plus what the server needs for the answer.

    Attributes:
        body: the Anthropic request JSON (always ``stream: true``, §1.0).
        model: capability row of the resolved model; ``body["model"]`` is the id sent upstream.
        requested_model: the ``model`` string the client sent.
        stream: the client asked for SSE.
        include_usage: the client asked for a final usage chunk (``stream_options.include_usage``).
        ignored_params: names for ``x-proxy-ignored-params`` (accepted, not forwarded).
        degraded_params: names for ``x-proxy-degraded-params`` (honoured approximately).
        warnings: one line per DROP, for the server's log.
        tool_id_map: sanitised upstream tool-call id -> the client's original id.
        tool_name_map: sanitised upstream tool name -> the client's original name.
        legacy_functions: the client used ``functions``; answer with ``function_call``.
        thinking_active: thinking is on for this request (explicitly or by model default).
        anthropic_beta: values for the ``anthropic-beta`` header (empty: send none).
    """

    body: AnthropicRequest
    model: ModelInfo
    requested_model: str
    stream: bool = False
    include_usage: bool = False
    ignored_params: list[str] = field(default_factory=list)
    degraded_params: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tool_id_map: dict[str, str] = field(default_factory=dict)
    tool_name_map: dict[str, str] = field(default_factory=dict)
    legacy_functions: bool = False
    thinking_active: bool = False
    anthropic_beta: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        """The model id sent upstream."""
        return self.body["model"]

    def response_headers(self) -> dict[str, str]:
        """``x-proxy-ignored-params`` / ``x-proxy-degraded-params`` headers (only non-empty ones)."""
        headers: dict[str, str] = {}
        if self.ignored_params:
            headers["x-proxy-ignored-params"] = ",".join(dict.fromkeys(self.ignored_params))
        if self.degraded_params:
            headers["x-proxy-degraded-params"] = ",".join(dict.fromkeys(self.degraded_params))
        return headers

