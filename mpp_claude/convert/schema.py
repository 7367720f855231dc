"""JSON Schema clean-up for Anthropic structured outputs (spec §1.5, ``response_format``).

Structured outputs accept a subset of JSON Schema: every object must be closed
(``additionalProperties: false``) and numeric/length constraints are not supported.  Like the
Anthropic SDK's schema transform and LiteLLM, unsupported constraints are removed and written
into the ``description`` so the model still sees them (e.g. ``{minLength: 2}``).
"""

from __future__ import annotations

import json
from typing import Any

from ._util import bad

__all__ = ["clean_schema"]

_DROP = ("minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "multipleOf", "maxItems", "uniqueItems", "minProperties", "maxProperties",
         "minContains", "maxContains", "patternProperties")
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4",
                      "ipv6", "uuid"})
_MAX_DEPTH = 64


def clean_schema(schema: Any, param: str) -> dict[str, Any]:
    """A copy of ``schema`` that structured outputs accept.

    Args:
        schema: the client's JSON Schema (must be an object schema).
        param: the request field path for error messages.
    Returns:
        the cleaned schema (input untouched).
    Raises:
        ConversionError: 400 when the schema is not an object or nests deeper than 64 levels.
    """
    if not isinstance(schema, dict):
        raise bad("json_schema.schema must be an object", param)
    out = _clean(schema, param, 0)
    if out.get("type") not in ("object", None) and "anyOf" not in out:
        raise bad("the top level of a structured-output schema must be an object", param)
    return out


def _clean(node: dict[str, Any], param: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise bad("json schema nests too deeply", param)
    out: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    for key, value in node.items():
        if (key in _DROP or (key == "minItems" and value not in (0, 1))
                or (key == "format" and value not in _FORMATS)):
            notes[key] = value
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: _sub(v, param, depth) for k, v in value.items()}
        elif key in ("items", "not") and isinstance(value, dict):
            out[key] = _clean(value, param, depth + 1)
        elif key in ("anyOf", "allOf", "oneOf", "prefixItems") and isinstance(value, list):
            out["anyOf" if key == "oneOf" else key] = [_sub(v, param, depth) for v in value]
        else:
            out[key] = value
    is_object = out.get("type") == "object" or (isinstance(out.get("type"), list) and "object" in out["type"])
    if is_object or "properties" in out:
        out["additionalProperties"] = False
        out.setdefault("properties", {})
    if notes:
        text = json.dumps(notes, separators=(", ", ": "), ensure_ascii=False, default=str)
        desc = out.get("description")
        out["description"] = f"{desc}\n\n{text}" if isinstance(desc, str) and desc else text
    return out


def _sub(value: Any, param: str, depth: int) -> Any:
    return _clean(value, param, depth + 1) if isinstance(value, dict) else value
