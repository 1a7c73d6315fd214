"""Checking JSON input against declared fields: one style for API bodies and ``/ws`` messages alike."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Field:
    """One accepted field of a request body.

    ``kind`` is the JSON type (``str``, ``int``, ``bool``, ``list``, ``dict``);
    ``items`` the type of a list's items; ``check`` returns an error message
    for a value of the right type that is still unacceptable.
    """

    kind: type
    required: bool = False
    items: type | None = None
    max_length: int | None = None
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else "must not be null"
        if not _is_kind(value, self.kind):
            return f"must be {_kind_name(self.kind)}"
        if self.items is not None and not all(_is_kind(v, self.items) for v in value):
            return f"must be a list of {_kind_name(self.items)}s"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} {'characters' if self.kind is str else 'items'} long"
        return self.check(value) if self.check else None


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "an object"}.get(
        kind, kind.__name__
    )


#: The deepest nesting of arrays and objects accepted in JSON from a client (bodies and /ws messages).
MAX_JSON_DEPTH = 64
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class TooDeep(ValueError):
    """JSON nested deeper than allowed."""


def json_depth(text: str | bytes) -> int:
    """How deep arrays and objects nest in JSON ``text`` (strings skipped); any text, valid or not."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    for token in _JSON_TOKENS.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}":
            depth -= 1
    return deepest


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH,
               loads: Callable[[str | bytes], Any] = json.loads) -> Any:
    """``loads`` (``json.loads``), refusing nesting deeper than ``max_depth`` with :class:`TooDeep` (a
    ValueError) before the parser recurses into it.  Text with few brackets is not scanned: it cannot
    nest deeper."""
    brackets = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    if brackets > max_depth and json_depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return loads(text)
