"""Recording events in ReQL: which email writes are events, their seqs, the history, and the stamp the feed sees.

A write to ``emails`` is followed, in the same ReQL query, by :func:`event_kind_reql`
(the mirror of :func:`events.model.event_kind`) over the write's changes.  Only
when some are events does the query go on: it takes a seq per event from the
``events`` counter (one document in ``counters``, bumped atomically), appends
``{id: seq, owner, kind, doc}`` to the ``events`` table (the history), and
stamps each email with ``_event: {seq, kind}``.  An inbound email, whose insert
is always an event, is stamped as it is inserted (the seq taken and the event
logged first), which saves that write.  One query means a client that dies
mid-way leaves no hole; it is not one transaction (RethinkDB has none across
documents), so a server failure in between can.

:class:`Recorder` runs such writes and prunes the history to about
``history_limit`` events.
"""

from __future__ import annotations

import logging
from typing import Any, overload

from gateway.store.base import Change
from gateway.store.documents import Doc, StoreError
from gateway.store.rethink.pool import Pool, r

log = logging.getLogger("gateway.store.rethink")

#: ``{id: seq, owner, kind, doc}``: the history of events.
EVENTS = "events"
#: ``{id: "events", seq: last seq taken, pruned: highest seq pruned}``.
COUNTERS = "counters"
#: The field stamped on an email whose write made an event: ``{seq, kind}``.
STAMP = "_event"
#: Prune the events table after this many events (or fewer when history_limit is small).
PRUNE_EVERY = 1000


@overload
def public(doc: Doc) -> Doc: ...
@overload
def public(doc: None) -> None: ...
@overload
def public(doc: Doc | None) -> Doc | None: ...


def public(doc: Doc | None) -> Doc | None:
    """A document as callers see it: without the backend's event stamp."""
    if doc is not None and STAMP in doc:
        return {k: v for k, v in doc.items() if k != STAMP}
    return doc


def real_changes(result: Doc) -> list[Doc]:
    """The entries of a write's ``changes`` that are writes: not errors, not absent documents."""
    return [c for c in result.get("changes", [])
            if "error" not in c and (c.get("old_val") is not None or c.get("new_val") is not None)]


def event_kind_reql(old: Any, new: Any) -> Any:
    """:func:`events.model.event_kind` in ReQL: "receipt", "delivery", "failed", "deferred" or None."""
    direction = new["direction"].default(None)
    status = new["status"].default(None)
    old_status = r.branch(old.eq(None), None, old["status"].default(None))
    return r.branch(
        new.eq(None), None,
        r.and_(old.eq(None), direction.eq("in")), "receipt",
        direction.ne("out"), None,
        r.and_(status.eq("delivered"), old_status.ne("delivered")), "delivery",
        r.and_(status.eq("failed"), old_status.ne("failed")), "failed",
        r.and_(status.eq("queued"), old.ne(None),
               new["attempts"].default(0).gt(r.branch(old.eq(None), 0, old["attempts"].default(0)))), "deferred",
        None,
    )


def is_event(change: Any) -> Any:
    """Whether a change of the emails feed carries a new event stamp (a new ``_event.seq``)."""
    seq = change["new_val"][STAMP]["seq"].default(None)
    return r.and_(seq.ne(None), seq.ne(change["old_val"][STAMP]["seq"].default(None)))


def is_stamp_only(change: Any) -> Any:
    """Whether a change of the emails feed only stamps an event on an email written just before
    (an inserted email is stamped as it is inserted: that change is the caller's write)."""
    return r.and_(change["old_val"].ne(None), is_event(change))


def take_seqs(count: Any) -> Any:
    """The last of ``count`` new consecutive event seqs, taken from the counter atomically."""
    bumped = r.table(COUNTERS).get(EVENTS).update(
        lambda counter: {"seq": counter["seq"].add(count)}, return_changes=True)
    return bumped["changes"][0]["new_val"]["seq"]


def _logged_or_error(inserted: Any, then: Any) -> Any:
    """``then``, once the insert into the events table went through; else the query fails."""
    return r.branch(inserted["errors"].eq(0), then, r.error(r.expr("events: ").add(inserted["first_error"])))


def inserted_with_event(doc: Doc, kind: str) -> Any:
    """Insert an email whose insert is an event: ``{result, seq}``.

    The seq is taken, the event logged, then the email inserted with its stamp.  An id that
    exists already is refused as a plain insert would be, without taking a seq; an insert that
    loses a race for the id anyway takes its event back out of the history (the feed then
    skips that seq, see :mod:`gateway.store.ordering`).
    """
    emails = r.table("emails")
    plain = emails.insert(doc, conflict="error", return_changes=True)
    return emails.get(doc["id"]).eq(None).do(lambda free: r.branch(
        free,
        take_seqs(1).do(lambda seq: r.table(EVENTS).insert(
            {"id": seq, "owner": doc.get("owner"), "kind": kind, "doc": doc},
        ).do(lambda inserted: _logged_or_error(inserted, emails.insert(
            r.expr(doc).merge({STAMP: {"seq": seq, "kind": kind}}), conflict="error", return_changes=True,
        ).do(lambda result: r.branch(
            result["inserted"].eq(1),
            {"result": result, "seq": seq},
            r.table(EVENTS).get(seq).delete().do(lambda _: {"result": result, "seq": None}),
        ))))),
        plain.do(lambda result: {"result": result, "seq": None}),
    ))


def with_events(write: Any) -> Any:
    """``write`` to emails followed, in the same query, by the recording of the changes that are events.

    The query returns ``{result, entries, kinds, last}``: the write's own result, its changes
    (as :func:`real_changes` picks them), the event kind of each (or None), and the seq of
    the last event (the events' seqs are consecutive).  When there are events it takes their
    seqs from the counter, appends them to the events table, and then stamps each email, which
    is what the event feed sees.
    """
    def real(change: Any) -> Any:
        return ~change.has_fields("error") & (change["old_val"].ne(None) | change["new_val"].ne(None))

    def record(result: Any, entries: Any, kinds: Any, events: Any) -> Any:
        count = events.count()
        return take_seqs(count).do(lambda last: r.range(count).map(lambda i: {
            "id": last.sub(count).add(i).add(1),
            "owner": events.nth(i)["doc"]["owner"].default(None),
            "kind": events.nth(i)["kind"],
            "doc": events.nth(i)["doc"],
        }).coerce_to("array").do(lambda logged: r.table(EVENTS).insert(logged).do(lambda inserted: _logged_or_error(
            inserted,
            logged.for_each(lambda e: r.table("emails").get(e["doc"]["id"]).update(
                {STAMP: r.literal({"seq": e["id"], "kind": e["kind"]})})).do(
                lambda _: {"result": result, "entries": entries, "kinds": kinds, "last": last}),
        ))))

    def events_of(entries: Any, kinds: Any) -> Any:
        return r.range(entries.count()).filter(lambda i: kinds.nth(i).ne(None)).map(
            lambda i: {"kind": kinds.nth(i), "doc": entries.nth(i)["new_val"].without(STAMP)}).coerce_to("array")

    return write.do(lambda result: result["changes"].default([]).filter(real).coerce_to("array").do(
        lambda entries: entries.map(lambda c: event_kind_reql(c["old_val"], c["new_val"])).coerce_to("array").do(
            lambda kinds: events_of(entries, kinds).do(lambda events: r.branch(
                events.count().eq(0), {"result": result, "entries": entries, "kinds": kinds, "last": 0},
                record(result, entries, kinds, events))))))


class Recorder:
    """Runs writes to the emails table with their events recorded, and prunes the history."""

    def __init__(self, pool: Pool, history_limit: int) -> None:
        self._pool = pool
        self.history_limit = history_limit
        self._events_since_prune = 0

    async def write(self, table: str, write: Any) -> tuple[Doc, list[Change]]:
        """Run a write made with ``return_changes``; its result and its changes.

        For the emails table the same query also records the changes that are
        events, so those come with their kind and cursor (see :func:`with_events`).
        """
        if table != "emails":
            result = await self._pool.run(write)
            return result, [Change(table, c["old_val"], c["new_val"]) for c in real_changes(result)]
        reply = await self._pool.run(with_events(write))
        kinds: list[str | None] = reply["kinds"]
        events = sum(kind is not None for kind in kinds)
        seq = reply["last"] - events  # the seq before this write's first event
        changes = []
        for entry, kind in zip(reply["entries"], kinds):
            old, new = public(entry["old_val"]), public(entry["new_val"])
            if kind is None:
                changes.append(Change(table, old, new))
            else:
                seq += 1
                changes.append(Change(table, old, new, str(seq), kind))
        await self._count_events(events, reply["last"])
        return reply["result"], changes

    async def insert_event(self, doc: Doc, kind: str) -> tuple[Doc, list[Change]]:
        """Insert an email that is an event, stamped as it is inserted (one write less than
        :func:`with_events`' stamp after the fact)."""
        reply = await self._pool.run(inserted_with_event(doc, kind))
        seq = reply["seq"]
        changes = [Change("emails", None, public(c["new_val"]), str(seq), kind) for c in real_changes(reply["result"])]
        if changes:
            await self._count_events(1, seq)
        return reply["result"], changes

    async def _count_events(self, count: int, last: int) -> None:
        """Note ``count`` new events up to seq ``last``; prune the history now and then."""
        if not count:
            return
        self._events_since_prune += count
        if self._events_since_prune >= min(PRUNE_EVERY, self.history_limit):
            self._events_since_prune = 0
            await self._prune(last - self.history_limit)

    async def _prune(self, upto: int) -> None:
        """Drop the events with seq <= ``upto`` (keeping about history_limit)."""
        if upto <= 0:
            return
        try:
            # the mark first: a history read in between may call itself incomplete, never wrongly complete
            await self._pool.run(r.table(COUNTERS).get(EVENTS).update(
                lambda c: {"pruned": r.expr([c["pruned"].default(0), upto]).max()}))
            await self._pool.run(r.table(EVENTS).between(r.minval, upto, right_bound="closed").delete(durability="soft"))
        except StoreError as exc:  # the write itself succeeded; the next prune catches up
            log.warning("pruning the event history failed: %s", exc)
