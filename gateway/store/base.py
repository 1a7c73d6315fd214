"""The store interface, split by role: documents, the event log, and change feeds.

Callers type against the role they use (:class:`Documents`, :class:`EventLog`);
a backend implements :class:`Store`, which is all of them plus a lifecycle.
Every backend passes the contract suite in ``tests/test_store_contract.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

from events.model import Event
from gateway.store.documents import Conflict, Doc, Query


def seq_cursor(cursor: str) -> int | None:
    """The number of a cursor that is a plain sequence number (decimal digits, at most 18: SQLite's,
    and RethinkDB's "0" and earlier layout), or None for any other."""
    return int(cursor) if cursor.isascii() and cursor.isdigit() and len(cursor) <= 18 else None


@dataclass(frozen=True)
class Change:
    """One write to a table: ``old`` is None for an insert, ``new`` for a delete.

    An event (see :func:`events.model.event_kind`) also has its ``kind`` and a
    ``cursor``: its position among its owner's events, an opaque string; an
    owner's cursors compare in the order of their events with
    :meth:`EventLog.cursor_key`.
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

    def event(self) -> Event | None:
        """The event this change is, or None for a change that is no event."""
        if self.kind is None or self.cursor is None or self.new is None:
            return None
        return Event(self.kind, self.new, self.cursor)


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


class Documents(abc.ABC):
    """Reading and writing documents, and following a table's writes."""

    #: Whether other gateway processes may use the same store at once (then claims expire, see mail.delivery).
    shared: bool = False

    @abc.abstractmethod
    async def get(self, table: str, id: str) -> Doc | None:
        """The document with that id, or None."""

    @abc.abstractmethod
    async def insert(self, table: str, doc: Doc) -> Doc:
        """Store a new document (it must have an ``id``); :class:`Conflict` if the id is taken."""

    async def insert_with(self, table: str, doc: Doc, *others: tuple[str, Doc],
                          before: Sequence[tuple[str, Doc]] = ()) -> list[str]:
        """Insert ``doc``, then, if it went in, each of ``others`` (``(table, doc)``) on its own, in
        one round trip where the backend can.  :class:`Conflict` if ``doc``'s id is taken (then
        nothing of ``others`` is inserted); else the tables of the others whose id was taken.

        ``before`` are inserted first, each on its own; one whose id is taken is left as it is
        (a retry stored it already), whatever becomes of ``doc``.
        """
        for before_table, earlier in before:
            try:
                await self.insert(before_table, earlier)
            except Conflict:
                pass
        await self.insert(table, doc)
        taken = []
        for other_table, other in others:
            try:
                await self.insert(other_table, other)
            except Conflict:
                taken.append(other_table)
        return taken

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

    async def find_listed(self, table: str, query: Query) -> list[bytes] | None:
        """What :meth:`find` gives, each document as its listed view already encoded (compact JSON
        of :func:`~gateway.store.documents.public` without the fields the store was told lists
        leave out), when this backend keeps those views for ``table`` and has every one of the
        page's; None otherwise, and the caller finds and encodes the documents itself."""
        return None

    @abc.abstractmethod
    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        """How many documents match ``where``."""

    @abc.abstractmethod
    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        """Remove every matching document; how many were removed."""

    @abc.abstractmethod
    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        """A feed of the writes to ``table`` committed after this returns, in commit order.

        With ``where`` (as in :class:`Query`), only writes whose new document
        matches it, filtered by the store itself.  Each call opens an
        independent feed; it ends when the store closes.
        """


class EventLog(abc.ABC):
    """The events the store recorded as the writes that made them committed: history and live feed.

    Order is per owner (an account): each owner's events have cursors in the order they
    happened, and every reader sees them in that order.  Cursors of different owners need
    not compare (a backend may count each owner's events apart).
    """

    #: Whether each owner's events are numbered without gaps (``cursor_key`` an int, the next
    #: event's key one more), so a reader that gets key k + 2 right after k knows one is still
    #: on its way.  Its feed may then report an owner's events out of order, but an event is in
    #: :meth:`event_history` before any later event of its owner is reported.
    consecutive: bool = False

    @abc.abstractmethod
    async def event_history(self, owner: str, after: str | None, limit: int) -> History:
        """Up to ``limit`` events of the owner's emails after cursor ``after`` (None: the oldest
        kept), in cursor order.  Raises ValueError for a malformed cursor, or another owner's."""

    @abc.abstractmethod
    async def latest_event_cursor(self, owner: str) -> str:
        """A cursor at the owner's newest event so far (before their first, when they have none):
        every later event of theirs comes after it."""

    @abc.abstractmethod
    def cursor_key(self, cursor: str, owner: str | None = None) -> Any:
        """A sort key for an event cursor of this store: one owner's keys compare in cursor order.
        Raises ValueError for a malformed cursor, and (given ``owner``) for another owner's."""

    @abc.abstractmethod
    async def event_feed(self) -> ChangeFeed:
        """A feed of the events committed after this returns, each owner's in cursor order (each with
        its ``kind`` and ``cursor``; see :attr:`consecutive`), filtered by the store itself: other
        writes never reach the caller.

        Each call opens an independent feed; it ends when the store closes.
        """


class Store(Documents, EventLog):
    """A whole backend: documents and the event log, opened and closed as one."""

    #: The backend's name (``sqlite``, ``rethinkdb``), as the metrics label it.
    backend: str = ""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; open change feeds end."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the store answers right now."""
