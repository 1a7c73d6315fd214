"""How a received message is held while it is read: the email package's default policy, with its
header classes made once, and every part a :class:`ReceivedMessage`, which parses each of its
headers once (and a short one once for all messages)."""

from __future__ import annotations

import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import Any


class _HeaderClasses(HeaderRegistry):
    """The default header registry, making each header class once.

    ``HeaderRegistry`` builds a new class (``type(...)`` over an ABC) for every header it parses:
    about a quarter of a small message's parse time, and a class per header for the garbage
    collector.  The classes it would build for one kind of header are all alike (no state of their
    own), so one is made per kind and kept: at most one per class in the registry.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made

    def map_to_type(self, name: str, cls: type) -> None:
        super().map_to_type(name, cls)
        self._made.clear()


class ReceivedMessage(EmailMessage):
    """An ``EmailMessage`` that parses each of its headers once.

    ``get`` and ``get_all`` parse a header's raw value every time they are asked (a Content-Type:
    the email package's header parser, tens of microseconds), and reading a message asks for the
    same ones again and again: ``get_content_type``, ``get_body`` and ``get_filename`` each read
    Content-Type and Content-Disposition, part by part.  The parsed header is kept by its raw name
    and value, so a header set or changed later is parsed afresh (nothing is ever stale).  Header
    objects are immutable strings, so handing the same one out twice is safe.
    """

    _headers: list[tuple[str, Any]]  # the email package's own list of raw (name, value), in order
    _parsed: dict[tuple[str, str], Any]

    def _fetch(self, name: str, value: Any) -> Any:
        if not isinstance(value, str):  # a header object set by a caller (or unhashable): not kept
            return self.policy.header_fetch_parse(name, value)
        try:
            parsed = self._parsed
        except AttributeError:
            parsed = self._parsed = {}
        key = (name, value)
        header = parsed.get(key)
        if header is None:
            header = parsed[key] = shared_header(self.policy, name, value)
        return header

    def get(self, name: str, failobj: Any = None) -> Any:
        name = name.lower()
        for key, value in self._headers:
            if key.lower() == name:
                return self._fetch(key, value)
        return failobj

    def get_all(self, name: str, failobj: Any = None) -> Any:
        name = name.lower()
        values = [self._fetch(key, value) for key, value in self._headers if key.lower() == name]
        return values or failobj


#: How received messages are read: the email package's default policy, with its header classes made
#: once and every part a :class:`ReceivedMessage`.
HEADER_CLASSES = _HeaderClasses()
POLICY = email.policy.default.clone(header_factory=HEADER_CLASSES, message_factory=ReceivedMessage)
#: Parsed headers shared by every received message (:func:`shared_header`), by raw name and value.
SHARED_HEADERS: dict[tuple[str, str], Any] = {}
#: Only values this short are shared, and at most this many (the table is emptied when full).
SHARED_CHARS, SHARED_COUNT = 200, 512


def shared_header(policy: Any, name: str, value: str) -> Any:
    """``policy.header_fetch_parse(name, value)``, parsed once for every received message that has
    the header: an account's own address in To, a sender's From, the parts' Content-Type and
    Content-Transfer-Encoding come again and again, and the email package takes 10-110 us to parse
    one.  Header objects are immutable strings, so one may be handed to many messages.  (Each step
    is one dict operation, so the worker threads that parse large messages may share it too.)"""
    if policy is not POLICY or type(value) is not str or len(value) > SHARED_CHARS:  # (not a header object)
        return policy.header_fetch_parse(name, value)
    key = (name, value)
    header = SHARED_HEADERS.get(key)
    if header is None:
        header = policy.header_fetch_parse(name, value)
        if len(SHARED_HEADERS) >= SHARED_COUNT:
            SHARED_HEADERS.clear()
        SHARED_HEADERS[key] = header
    return header
