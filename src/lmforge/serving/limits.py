"""Per-request input limits, checked in one place and stated in the OpenAPI schema.

Two limits hold for every prediction request, whatever the task:

- every string in the body has at most ``max_input_chars`` characters (``maxLength``);
- every list at the top level of the body (``texts``, ``inputs``, ``messages``, ...) has at
  most ``max_items`` entries (``maxItems``).

:func:`check_limits` enforces them on the validated request and :func:`document_limits` writes
them into the served ``/openapi.json``, so a client generated from the schema knows them
and the schema never promises a request the server refuses. ``max_input_tokens`` depends on
the tokenizer and cannot be stated in a schema; it is checked by the app.
"""

from __future__ import annotations

from typing import Any

from lmforge.serving.errors import LimitExceeded


def strings_in(value: Any) -> list[str]:
    """Every string inside a value (nested lists / dicts included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


def check_limits(body: dict[str, Any], max_items: int, max_input_chars: int) -> None:
    """Raise :class:`LimitExceeded` when ``body`` breaks ``max_items`` or ``max_input_chars``.

    Args:
        body: The validated request as plain data (``model_dump``).
        max_items: Most entries of a top-level list.
        max_input_chars: Most characters of any string.
    """
    for name, value in body.items():
        if isinstance(value, list) and len(value) > max_items:
            raise LimitExceeded(f"'{name}' has {len(value)} entries; the limit is max_items="
                                f"{max_items}; split the request", "max_items")
    for text in strings_in(body):
        if len(text) > max_input_chars:
            raise LimitExceeded(f"an input has {len(text)} characters; the limit is "
                                f"max_input_chars={max_input_chars}", "max_input_chars")


def _resolve(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return components.get(ref.rsplit("/", 1)[1], node)
    return node


def _cap(node: dict[str, Any], key: str, value: int) -> None:
    node[key] = min(node.get(key, value), value)


def _limit_strings(node: Any, components: dict[str, Any], seen: set[int],
                   max_chars: int) -> None:
    """``maxLength`` on every string schema reachable from ``node`` (through ``$ref``)."""
    if isinstance(node, list):
        for item in node:
            _limit_strings(item, components, seen, max_chars)
        return
    if not isinstance(node, dict) or id(node) in seen:
        return
    seen.add(id(node))
    target = _resolve(node, components)
    if target is not node:
        _limit_strings(target, components, seen, max_chars)
        return
    if node.get("type") == "string":
        _cap(node, "maxLength", max_chars)
    for value in node.values():
        if isinstance(value, dict | list):
            _limit_strings(value, components, seen, max_chars)


def _arrays(node: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """The array schemas a property may take (itself, or branches of anyOf / oneOf)."""
    node = _resolve(node, components)
    if node.get("type") == "array":
        return [node]
    return [a for key in ("anyOf", "oneOf") for branch in node.get(key, [])
            for a in _arrays(branch, components)]


def document_limits(schema: dict[str, Any], paths: set[str], max_items: int,
                    max_input_chars: int) -> None:
    """Write the limits into the request bodies of ``paths`` in an OpenAPI document.

    Args:
        schema: The OpenAPI document (changed in place).
        paths: The prediction routes whose bodies :func:`check_limits` checks.
        max_items: ``maxItems`` of every top-level array property.
        max_input_chars: ``maxLength`` of every string.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    seen: set[int] = set()
    for path, operations in schema.get("paths", {}).items():
        if path not in paths:
            continue
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            if not body:
                continue
            root = _resolve(body, components)
            for prop in root.get("properties", {}).values():
                for array in _arrays(prop, components):
                    _cap(array, "maxItems", max_items)
            _limit_strings(body, components, seen, max_input_chars)
