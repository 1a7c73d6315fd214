"""JSON the fast way (orjson), with the standard library behind it for what orjson refuses.

orjson encodes compactly and writes non-ASCII characters as raw UTF-8; it refuses
to encode what is not valid Unicode or JSON's types: a lone surrogate, an integer
beyond 64 bits, a non-string key.  Those rare values go through :mod:`json`
instead (compact, ``\\uXXXX`` escapes), so nothing that worked before fails now.
A NaN or an infinity it encodes as ``null`` (:mod:`json` would write ``NaN``,
which is not JSON).  Decoding, it refuses ``NaN`` and the like, which :mod:`json`
reads: :func:`loads` falls back to it.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

__all__ = ["dumps", "loads", "loads_as_json"]


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes (UTF-8)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a huge int, a non-str key
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text``: the same Python objects :func:`json.loads` gives, but for an
    integer beyond 64 bits, which orjson reads as a float (for the store's documents, whose
    integers -- sizes, counts, attempts, seconds -- are all far smaller)."""
    try:
        return orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError: NaN, an escaped lone surrogate, a huge int
        return json.loads(text)


def loads_as_json(text: str | bytes, read_alike: Callable[[Any], bool]) -> Any:
    """Exactly what :func:`json.loads` gives for ``text`` (client input: its objects and its errors),
    by orjson where ``read_alike(value)`` says orjson's value is that one: orjson reads an integer
    beyond 64 bits as a float, so a value that may hold one is read again by :mod:`json`, and so is
    whatever orjson refuses (``NaN``, a lone surrogate, an encoding other than UTF-8)."""
    try:
        value = orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError
        return json.loads(text)
    return value if read_alike(value) else json.loads(text)
