"""Pure core of the local upstream: tokenizer, deterministic replies and the Messages JSON.

Nothing here does I/O or reads a clock or randomness: the reply depends only on
the request body, and the ids only on the ``nonce`` the caller passes.

Tokenizer (documented because prices are computed from it): text is split into
pieces, a piece being a run of word characters (``\\w+``) or one other
non-space character; a word costs ``ceil(len/4)`` tokens, punctuation 1.
Input tokens = system text + 3 per message + every block (text, tool_use name and
JSON input, tool_result text, thinking text; an image 1568, a document its text
or base64 length/6) + for tools 300 (the tool-use system prompt) plus each
tool's name, description and JSON schema.  Output tokens = thinking text + text
+ each tool_use name and JSON input.  Prompt caching is not simulated (cache
counts are 0).

Replies:

* last user text starting with ``echo:`` → the rest, verbatim;
* last user message carrying ``tool_result`` blocks → a sentence quoting the result;
* otherwise ``You said "<first words>". `` plus two or three sentences chosen by a
  hash of the whole request (same request, same reply).

Tools are called when offered and ``tool_choice`` forces it (``any``/``tool``),
or under ``auto`` when the last user text names a tool or says "use the tool"
(several named tools → parallel calls unless ``disable_parallel_tool_use``).
Thinking (``enabled`` or ``adaptive``) adds a leading thinking block.
``max_tokens`` and ``stop_sequences`` cut the output as the real API does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PIECE = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_MARK = re.compile(r"[^\w\s]")
#: base64url's two non-alphanumeric characters, mapped to letters for Anthropic-looking ids
_ID_CHARS = bytes.maketrans(b"-_", b"xy")
#: Complete sentences the offline model picks from (by a hash of the request), so that
#: demos read naturally while the reply stays deterministic.
_SENTENCES = (
    "This answer comes from the offline model that ships with mpp-claude.",
    "Each request was priced up front and paid with one on-chain transfer.",
    "Paying per request means no API key to leak and no subscription to manage.",
    "The receipt of this call names the transaction that settled it.",
    "A budget on the client caps what any single call may cost.",
    "The ledger records the quote and the tokens actually used.",
    "Swap the upstream to the real Anthropic API and nothing else changes.",
    "Every payment is bound to its challenge, so it cannot be replayed.",
    "Stablecoins keep the price of a token predictable.",
    "Tempo settles a payment in about half a second.",
    "An agent can stop cleanly the moment its budget runs out.",
    "The same request always gets the same offline reply.",
)
_TOOL_PHRASES = ("use the tool", "use a tool", "call the tool", "use tools", "call a tool")
TOOL_PROMPT_TOKENS = 300
IMAGE_TOKENS = 1568


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under the local tokenizer (see the module docstring)."""
    # ceil(len/4) per word run, 1 per other non-space character: two C-level scans
    return sum([(len(w) + 3) >> 2 for w in _WORD.findall(text)]) + len(_MARK.findall(text))


def truncate_tokens(text: str, limit: int) -> tuple[str, int]:
    """The longest prefix of ``text`` costing at most ``limit`` tokens, and its cost."""
    total = count_tokens(text)
    if total <= limit:
        return text, total  # everything fits, trailing whitespace included
    used, end = 0, 0
    for m in _PIECE.finditer(text):
        piece = m.group()
        word = piece[0].isalnum() or piece[0] == "_"
        cost = math.ceil(len(piece) / 4) if word else 1
        if used + cost <= limit:
            used, end = used + cost, m.end()
            continue
        if word and limit > used:  # a long word is cut at a 4-character token boundary
            end = m.start() + 4 * (limit - used)
            used = limit
        break
    else:
        end = len(text)  # everything fits, trailing whitespace included
    return text[:end], used


def chunk_text(text: str, tokens_per_chunk: int = 4) -> list[str]:
    """Split ``text`` into consecutive pieces (as a stream would) whose concatenation is ``text``."""
    if not text:
        return []
    cuts = [m.end() for i, m in enumerate(_PIECE.finditer(text), 1) if i % tokens_per_chunk == 0]
    chunks, start = [], 0
    for cut in cuts:
        if cut > start:
            chunks.append(text[start:cut])
            start = cut
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, str):
            return content
        return " ".join(_block_text(b) for b in content if isinstance(b, Mapping))
    return ""


def _blocks(content: Any) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []


def _block_tokens(block: Mapping[str, Any]) -> int:
    kind = block.get("type")
    if kind in {"text", "tool_result"}:
        return count_tokens(_block_text(block))
    if kind == "tool_use":
        return count_tokens(str(block.get("name", ""))) + count_tokens(json.dumps(block.get("input", {})))
    if kind == "thinking":
        return count_tokens(str(block.get("thinking", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source", {})
        if isinstance(source, Mapping) and source.get("type") == "text":
            return count_tokens(str(source.get("data", "")))
        data = source.get("data", "") if isinstance(source, Mapping) else ""
        return max(1, len(str(data)) // 6)
    return 1


def system_text(system: Any) -> str:
    """The system prompt as one string (``str`` or a list of text blocks)."""
    if isinstance(system, str):
        return system
    return "\n".join(_block_text(b) for b in _blocks(system))


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a (validated) Messages request under the local tokenizer."""
    total = count_tokens(system_text(body.get("system", "")))
    for message in body.get("messages", []):
        total += 3 + sum(_block_tokens(b) for b in _blocks(message.get("content")))
    tools = body.get("tools") or []
    if tools:
        total += TOOL_PROMPT_TOKENS
        for tool in tools:
            total += count_tokens(str(tool.get("name", ""))) + count_tokens(str(tool.get("description", "")))
            total += count_tokens(json.dumps(tool.get("input_schema", {}), sort_keys=True))
    return total


# --- deciding what to say ------------------------------------------------------------------------------


def make_id(prefix: str, data: bytes) -> str:
    """``prefix`` + 22 alphanumeric characters derived from ``data`` (like ``msg_01XFDUDYJgAA...``)."""
    return prefix + base64.urlsafe_b64encode(data).translate(_ID_CHARS)[:22].decode()


def _digest(*parts: str | bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        data = p.encode() if isinstance(p, str) else p
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


def _seeded_sentence(seed: bytes) -> str:
    """Two or three distinct sentences chosen by ``seed``."""
    count = 2 + seed[0] % 2
    picked: list[str] = []
    for byte in seed[1:]:
        sentence = _SENTENCES[byte % len(_SENTENCES)]
        if sentence not in picked:
            picked.append(sentence)
        if len(picked) == count:
            break
    return " ".join(picked)


def _last_user(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return _blocks(message.get("content"))
    return []


def _sample(schema: Any, word: str) -> Any:
    if not isinstance(schema, Mapping):
        return word
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _sample(schema[key][0], word)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {str(n): _sample(props.get(n, {}), word) for n in names}
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample(schema["items"], word)] if isinstance(schema.get("items"), Mapping) else []
    if kind == "null":
        return None
    return word


def _chosen_tools(body: Mapping[str, Any], user_text: str, answered_tools: bool) -> tuple[list[Any], bool]:
    """The tools to call and whether the call was forced (forced calls come without text)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping) and t.get("name")]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type", "auto")
    if not tools or kind == "none":
        return [], False
    lowered = user_text.lower()
    named = [t for t in tools
             if re.search(rf"(?<![\w-]){re.escape(str(t['name']).lower())}(?![\w-])", lowered)]
    if kind == "tool":
        return [t for t in tools if t["name"] == choice.get("name")][:1], True
    if kind == "any":
        return (named or tools)[:1], True
    if answered_tools:
        return [], False
    if not named and any(p in lowered for p in _TOOL_PHRASES):
        named = tools[:1]
    if choice.get("disable_parallel_tool_use"):
        named = named[:1]
    return named, False


_STOPWORDS = frozenset({"the", "a", "an", "in", "for", "of", "to", "and", "or", "is", "what", "use", "tool",
                        "please", "call", "with", "on", "at", "me", "my", "i", "you"})


def _topic_word(text: str, exclude: Sequence[str]) -> str:
    """The word a tool argument is filled with: the last capitalised word, else the longest one."""
    skip = {e.lower() for e in exclude} | _STOPWORDS
    words: list[str] = [w for w in re.findall(r"[^\W_][\w-]*", text) if w.lower() not in skip]
    if not words:
        return "example"
    capitalised = [w for w in words[1:] if w[0].isupper()]
    return capitalised[-1] if capitalised else max(words, key=len)


def plan_content(body: Mapping[str, Any], nonce: bytes) -> list[dict[str, Any]]:
    """The full, uncut content blocks the local model answers ``body`` with.

    Args:
        body: a validated Messages request.
        nonce: bytes that make the tool_use ids of this call unique.
    """
    user_blocks = _last_user(body)
    user_text = " ".join(_block_text(b) for b in user_blocks if b.get("type") == "text").strip()
    results = [b for b in user_blocks if b.get("type") == "tool_result"]
    canonical = json.dumps({k: body.get(k) for k in ("model", "system", "messages", "tools")},
                           sort_keys=True, default=str)
    seed = _digest(canonical)
    blocks: list[dict[str, Any]] = []
    thinking = body.get("thinking") or {}
    if thinking.get("type") in {"enabled", "adaptive"}:
        thought = (f"The user wrote {len(user_text.split())} words. "
                   f"{_seeded_sentence(_digest(seed, 'thinking'))} I will answer briefly.")
        signature = base64.b64encode(_digest(seed, "signature", thought) * 3).decode()
        blocks.append({"type": "thinking", "thinking": thought, "signature": signature})
    tools, forced = _chosen_tools(body, user_text, bool(results))
    if user_text.lower().startswith("echo:") and not tools:
        text = user_text[5:].lstrip()
    elif results and not tools:
        quoted = " ".join(_block_text(r) for r in results)[:80]
        text = f"The tool returned: {quoted}. {_seeded_sentence(seed)}"
    else:
        first = " ".join(user_text.split()[:8])
        text = (f'You said "{first}". ' if first else "") + _seeded_sentence(seed)
    if tools and not forced:
        text = "I'll use the " + " and ".join(str(t["name"]) for t in tools) + (
            " tool." if len(tools) == 1 else " tools.")
    if not (tools and forced) and text:
        blocks.append({"type": "text", "text": text})
    word = _topic_word(user_text, [str(t["name"]) for t in tools])
    for i, tool in enumerate(tools):
        tool_id = make_id("toolu_01", _digest(nonce, str(i)))
        blocks.append({"type": "tool_use", "id": tool_id, "name": tool["name"],
                       "input": _sample(tool.get("input_schema", {}), word)})
    return blocks


def _output_cost(block: Mapping[str, Any]) -> int:
    return _block_tokens(block)


def cut_content(blocks: Sequence[dict[str, Any]], max_tokens: int, stop_sequences: Sequence[str]
                ) -> tuple[list[dict[str, Any]], str, str | None, int, int]:
    """Apply stop sequences and ``max_tokens`` in generation order.

    Returns:
        ``(blocks, stop_reason, stop_sequence, output_tokens, thinking_tokens)``.
    """
    out: list[dict[str, Any]] = []
    used = thinking_used = 0
    has_tools = any(b["type"] == "tool_use" for b in blocks)
    for block in blocks:
        remaining = max_tokens - used
        if block["type"] in {"text", "thinking"}:
            key = "text" if block["type"] == "text" else "thinking"
            text, matched = block[key], None
            if block["type"] == "text":
                hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
                if hits:
                    pos, matched = min(hits)
                    text = text[:pos]
            cut, cost = truncate_tokens(text, remaining)
            used += cost
            if block["type"] == "thinking":
                thinking_used += cost
            if cut or block["type"] == "thinking":
                out.append({**block, key: cut})
            if cut != text:
                return out, "max_tokens", None, used, thinking_used
            if matched is not None:
                return out, "stop_sequence", matched, used, thinking_used
        else:
            cost = _output_cost(block)
            if cost > remaining:
                return out, "max_tokens", None, used, thinking_used
            used += cost
            out.append(block)
    return out, "tool_use" if has_tools else "end_turn", None, used, thinking_used


def usage(input_tokens: int, output_tokens: int, thinking_tokens: int) -> dict[str, Any]:
    """A Messages ``usage`` object with no cache activity."""
    return {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"thinking_tokens": thinking_tokens},
            "server_tool_use": None, "service_tier": "standard"}


def build_message(body: Mapping[str, Any], nonce: bytes) -> dict[str, Any]:
    """The complete Messages response object for a validated request.

    Args:
        body: a validated Messages request.
        nonce: per-call bytes; the message and tool_use ids derive from it.
    """
    planned = plan_content(body, nonce)
    content, reason, sequence, out_tokens, thinking_tokens = cut_content(
        planned, int(body["max_tokens"]), list(body.get("stop_sequences") or []))
    msg_id = make_id("msg_01", _digest(nonce, "msg"))
    return {"id": msg_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": reason, "stop_sequence": sequence, "stop_details": None,
            "container": None,
            "usage": usage(count_input_tokens(body), out_tokens, thinking_tokens)}
