"""The store interface that handlers and events speak to.

Documents are JSON-shaped dicts with a string ``id``.  Queries are built from
:class:`Query` with plain equality plus the :class:`In` and :class:`Contains`
operators, so no SQL or ReQL leaks out of the backends.  Every backend passes
the contract suite in ``tests/test_store_contract.py``.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import Any

#: The tables every backend provides.
TABLES: tuple[str, ...] = ("accounts", "usernames", "tokens", "emails", "threads", "labels", "contacts")

#: The tables whose documents belong to an account (an ``owner`` field, indexed).
OWNED_TABLES: tuple[str, ...] = ("tokens", "emails", "threads", "labels", "contacts")

#: Field names a query may name; keeps backends free of injection worries.
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Doc = dict[str, Any]


class StoreError(Exception):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; retrying later may work."""


class Conflict(StoreError):
    """A document with that id already exists."""


@dataclass(frozen=True)
class In:
    """Matches documents whose field equals one of ``values``."""

    values: tuple[Any, ...]

    def __init__(self, values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Contains:
    """Matches documents whose array field contains ``value``."""

    value: Any


@dataclass
class Query:
    """Which documents of a table, in what order, which page.

    ``where`` maps field names to a value (equality), :class:`In` or
    :class:`Contains`.  ``order_by`` is a list of ``(field, descending)``;
    ties are broken by ``id`` so paging is stable.
    """

    where: dict[str, Any] = field(default_factory=dict)
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0

    def check(self) -> None:
        for name in list(self.where) + [name for name, _ in self.order_by]:
            if not FIELD_NAME.match(name):
                raise ValueError(f"bad field name {name!r}")


def matches(doc: Doc | None, where: dict[str, Any]) -> bool:
    """Whether a document satisfies ``where`` as :class:`Query` means it (a missing field equals None)."""
    if doc is None:
        return False
    for name, cond in where.items():
        value = doc.get(name)
        if isinstance(cond, In):
            if value is None or value not in cond.values:
                return False
        elif isinstance(cond, Contains):
            if not isinstance(value, list) or cond.value not in value:
                return False
        elif value != cond:
            return False
    return True


#: The kinds of event the emails table makes.
EVENT_KINDS: tuple[str, ...] = ("receipt", "delivery")


def event_kind(old: Doc | None, new: Doc | None) -> str | None:
    """The event a write to the emails table makes, or None (most writes make none).

    ``receipt``: an inbound email was stored.  ``delivery``: an outbound email's
    status became ``delivered``.  Each backend records these writes, with a
    cursor, as they commit (the RethinkDB backend evaluates the same rule in ReQL).
    """
    if new is None:
        return None
    if old is None and new.get("direction") == "in":
        return "receipt"
    if new.get("direction") == "out" and new.get("status") == "delivered" \
            and (old is None or old.get("status") != "delivered"):
        return "delivery"
    return None


def seq_cursor_key(cursor: str) -> int:
    """The key of a cursor that is a decimal sequence number (both backends' cursors are);
    ValueError for anything else."""
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise ValueError(f"malformed cursor {cursor[:40]!r}")
    return int(cursor)


@dataclass(frozen=True)
class Change:
    """One write to a table: ``old`` is None for an insert, ``new`` for a delete.

    An event (see :func:`event_kind`) also has its ``kind`` and a ``cursor``:
    its position among all events, an opaque string; cursors compare in the
    order events are reported with :meth:`Store.cursor_key`.
    """

    table: str
    old: Doc | None
    new: Doc | None
    cursor: str | None = None
    kind: str | None = None

    @property
    def owner(self) -> str | None:
        doc = self.new if self.new is not None else self.old
        return doc.get("owner") if doc else None


@dataclass
class History:
    """Events after a cursor, in cursor order; ``complete`` is False when older ones were already pruned."""

    changes: list[Change]
    complete: bool


class ChangeFeed(abc.ABC):
    """An open change feed: iterate it for :class:`Change` items; ``aclose()`` drops it."""

    def __aiter__(self) -> "ChangeFeed":
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Change:
        """The next change; ``StopAsyncIteration`` when the store closes."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the feed and release what it holds."""


class Store(abc.ABC):
    """What handlers and events may ask of storage."""

    #: Whether other gateway processes may use the same store at once (then claims expire, see mail_out).
    shared: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; open change feeds end."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the store answers right now."""

    @abc.abstractmethod
    async def get(self, table: str, id: str) -> Doc | None:
        """The document with that id, or None."""

    @abc.abstractmethod
    async def insert(self, table: str, doc: Doc) -> Doc:
        """Store a new document (it must have an ``id``); :class:`Conflict` if the id is taken."""

    @abc.abstractmethod
    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        """Merge ``changes`` into the document's top-level fields; the new document, or None.

        With ``only_if`` (field -> value), the update applies atomically only
        when the document's fields have those values (a claim); else None.
        """

    @abc.abstractmethod
    async def delete(self, table: str, id: str) -> Doc | None:
        """Remove the document; the removed document, or None if absent."""

    @abc.abstractmethod
    async def find(self, table: str, query: Query) -> list[Doc]:
        """The documents matching ``query``, ordered and paged."""

    @abc.abstractmethod
    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        """How many documents match ``where``."""

    @abc.abstractmethod
    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        """Remove every matching document; how many were removed."""

    @abc.abstractmethod
    async def event_history(self, owner: str, after: str | None, limit: int) -> History:
        """Up to ``limit`` events of the owner's emails after cursor ``after`` (None: the oldest
        kept), in cursor order.  Raises ValueError for a malformed cursor."""

    @abc.abstractmethod
    async def latest_event_cursor(self) -> str | None:
        """The cursor of the newest event so far (None before the first)."""

    @abc.abstractmethod
    def cursor_key(self, cursor: str) -> Any:
        """A sort key for an event cursor of this store: keys compare in cursor order."""

    @abc.abstractmethod
    async def event_feed(self) -> ChangeFeed:
        """A feed of the events committed after this returns, in cursor order (each with its
        ``kind`` and ``cursor``), filtered by the store itself: other writes never reach the caller.

        Each call opens an independent feed; it ends when the store closes.
        """

    @abc.abstractmethod
    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        """A feed of the writes to ``table`` committed after this returns, in commit order.

        With ``where`` (as in :class:`Query`), only writes whose new document
        matches it, filtered by the store itself.  Each call opens an
        independent feed; it ends when the store closes.
        """
