"""The messages a client sends on ``/ws``, parsed into types; anything malformed is a :class:`MessageError`.

Every SockJS message is one JSON object with a ``type``: ``request``,
``subscribe`` or ``unsubscribe`` (see docs/protocol.md).  Fields are checked
with :class:`gateway.validation.Field`, the same checks API bodies get.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Union
from urllib.parse import unquote, urlsplit

from events.model import DETAIL_LEVELS, EVENT_KINDS
from gateway.jsontext import loads_as_json
from gateway.validation import Field, TooDeep, parse_json

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: A header value as HTTP carries it (RFC 9110 field-value): visible ASCII, spaces and tabs inside,
#: and Latin-1 obs-text; no control character and no DEL.
HEADER_VALUE = re.compile(r"^[\x20-\x7e\x80-\xff\t]*$")
REQUEST_FIELDS = frozenset({"type", "id", "method", "path", "body", "headers", "accept_json_body"})
EVENT_TYPES = frozenset(EVENT_KINDS)
STRING = Field(str, required=True)


class MessageError(Exception):
    """A message answered with ``{"type": "error"}`` instead of being run.

    ``id`` is the message's own, when it had a string one; ``ordered`` says the
    answer takes its turn among subscribe/unsubscribe answers.
    """

    def __init__(self, code: str, message: str, id: str | None = None, ordered: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.id = id
        self.ordered = ordered


class Request(NamedTuple):
    """A tunneled HTTP request: ``target`` is path plus query; ``headers`` as (name, value) pairs.

    ``json_body``: the client asked (``"accept_json_body": true``) for a JSON response body as a
    JSON value (``"body_encoding": "json"``) rather than a string.  (A named tuple: made for every
    request, at a fifth of a frozen dataclass's cost.)
    """

    id: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    json_body: bool = False


@dataclass(frozen=True)
class Subscribe:
    """Bind the session to the token's account; replay after ``since``; only ``events`` kinds, each
    carrying what ``detail`` asks for (see :data:`events.model.DETAIL_LEVELS`)."""

    id: str | None
    token: str
    since: str | None
    events: frozenset[str] | None
    detail: str = "summary"


@dataclass(frozen=True)
class Unsubscribe:
    id: str | None


Message = Union[Request, Subscribe, Unsubscribe]


def _loads(text: str | bytes) -> Any:
    """A message's JSON, as ``json.loads`` reads it: by orjson (2.2 -> 0.6 µs) unless the message has a
    ``body`` given as JSON, the one field that may carry on an integer beyond 64 bits (every other
    field is checked as a string or a boolean)."""
    return loads_as_json(text, _no_json_body)


def _no_json_body(value: Any) -> bool:
    return not (isinstance(value, dict) and isinstance(value.get("body"), (dict, list)))


def parse(raw: Any, max_size: int, forbidden_prefix: str) -> Message:
    """The message in one SockJS frame's text; paths under ``forbidden_prefix`` cannot be tunneled."""
    if not isinstance(raw, str):  # a SockJS frame's item that is not a string: [123], [null], [{...}]
        raise MessageError("invalid_message", "Each message in a SockJS frame must be a string")
    if len(raw) > max_size:
        raise MessageError("too_large", f"Message exceeds {max_size} bytes")
    try:
        message = parse_json(raw, loads=_loads)
    except TooDeep as exc:
        raise MessageError("invalid_json", f"Message is not valid JSON: {exc}") from None
    except ValueError:
        raise MessageError("invalid_json", "Message is not valid JSON") from None
    if not isinstance(message, dict):
        raise MessageError("invalid_message", "Message must be a JSON object")
    message_id = message.get("id") if isinstance(message.get("id"), str) else None
    kind = message.get("type")
    if kind is None:
        raise MessageError("missing_field", "Missing field: type", message_id)
    if kind == "request":
        try:
            return _request(message, forbidden_prefix)
        except MessageError as exc:
            exc.id = message_id
            raise
    if kind == "subscribe":
        return _subscribe(message, message_id)
    if kind == "unsubscribe":
        return Unsubscribe(message_id)
    raise MessageError("unknown_type", f"Unknown message type: {str(kind)[:64]!r}", message_id)


def _request(message: dict[str, Any], forbidden_prefix: str) -> Request:
    for name in ("id", "method", "path"):
        if name not in message:
            raise MessageError("missing_field", f"Missing field: {name}")
        problem = STRING.problem(message[name])
        if problem:
            raise MessageError("invalid_field", f"Field '{name}' {problem}")
    unknown = set(message) - REQUEST_FIELDS
    if unknown:
        raise MessageError("unknown_field", f"Unknown field: {', '.join(sorted(unknown))}")
    method = message["method"].upper()
    if method not in METHODS:
        raise MessageError("invalid_field", f"Field 'method' must be one of {', '.join(sorted(METHODS))}")
    target = message["path"]
    _check_path(target, forbidden_prefix)
    body = message.get("body", "")
    if body is None:
        body = ""
    if isinstance(body, (dict, list)):
        body = json.dumps(body, separators=(",", ":"))
    if not isinstance(body, str):
        raise MessageError("invalid_field", "Field 'body' must be a string, an object or an array")
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800") is not text
        raise MessageError("invalid_field", "Field 'body' must be valid Unicode (no lone surrogates)") from None
    json_body = message.get("accept_json_body", False)
    if not isinstance(json_body, bool):
        raise MessageError("invalid_field", "Field 'accept_json_body' must be true or false")
    return Request(message["id"], method, target, _headers(message.get("headers", {})), data, json_body)


#: Targets :func:`_check_path` passed, by forbidden prefix (a session repeats its targets); at most
#: :data:`PATHS_REMEMBERED`, then it starts over.
_passed: dict[str, set[str]] = {}
PATHS_REMEMBERED = 1024


def _remember(passed: set[str], value: str) -> None:
    """Keep ``value`` among those that passed their check: at most :data:`PATHS_REMEMBERED`, then start over."""
    if len(passed) >= PATHS_REMEMBERED:
        passed.clear()
    passed.add(value)


def _check_path(target: str, forbidden_prefix: str) -> None:
    passed = _passed.get(forbidden_prefix)
    if passed is None:
        passed = _passed[forbidden_prefix] = set()
    elif target in passed:
        return
    _check_new_path(target, forbidden_prefix)
    _remember(passed, target)


def _check_new_path(target: str, forbidden_prefix: str) -> None:
    if not target.startswith("/") or target.startswith("//") or any(c in target for c in " \t\r\n\x00"):
        raise MessageError("invalid_field", "Field 'path' must be an absolute path such as /emails?limit=20")
    path = posixpath.normpath(unquote(urlsplit(target).path))
    if path == forbidden_prefix or path.startswith(forbidden_prefix + "/"):
        raise MessageError("forbidden_path", f"Paths under {forbidden_prefix} cannot be tunneled")


#: Header names :data:`HEADER_NAME` passed (a session repeats its names): at most :data:`PATHS_REMEMBERED`.
_valid_names: set[str] = set()


def _valid_name(name: str) -> bool:
    if name in _valid_names:
        return True
    if HEADER_NAME.fullmatch(name) is None:
        return False
    _remember(_valid_names, name)
    return True


def _headers(headers: Any) -> list[tuple[str, str]]:
    if not isinstance(headers, dict):
        raise MessageError("invalid_headers", "Field 'headers' must map names to a string or a list of strings")
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        # as an HTTP parser reads them: surrounding spaces and tabs are not part of the value
        if isinstance(value, str):  # the common case: no lists made for it
            values = [value.strip(" \t")]
            valid = _valid_name(name)
        else:
            values = value if isinstance(value, list) else [value]
            valid = _valid_name(name) and all(isinstance(v, str) for v in values)
            values = [v.strip(" \t") for v in values] if valid else values
        if not valid:
            raise MessageError("invalid_headers", f"Header {name[:64]!r} must be a valid name with string values")
        for v in values:
            if not HEADER_VALUE.fullmatch(v):
                raise MessageError("invalid_headers", f"Header {name[:64]!r} has a value HTTP cannot carry "
                                                      "(a control character, DEL, or a character outside Latin-1)")
            pairs.append((name, v))
    return pairs


def _subscribe(message: dict[str, Any], message_id: str | None) -> Subscribe:
    token, since, kinds = message.get("token"), message.get("since"), message.get("events")
    if "token" not in message:
        raise MessageError("missing_field", "Missing field: token", message_id, ordered=True)
    if since is not None and not isinstance(since, str):
        raise MessageError("invalid_field", "Field 'since' must be a cursor string", message_id, ordered=True)
    if kinds is not None and (not isinstance(kinds, list) or not kinds
                              or not all(isinstance(k, str) for k in kinds) or not set(kinds) <= EVENT_TYPES):
        raise MessageError("invalid_field", f"Field 'events' must list some of: {', '.join(sorted(EVENT_TYPES))}",
                           message_id, ordered=True)
    detail = message.get("detail", "summary")
    if detail not in DETAIL_LEVELS:
        raise MessageError("invalid_field", f"Field 'detail' must be one of: {', '.join(DETAIL_LEVELS)}",
                           message_id, ordered=True)
    return Subscribe(message_id, token if isinstance(token, str) else "", since,
                     frozenset(kinds) if kinds else None, detail)
