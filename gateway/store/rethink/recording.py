"""Recording events in ReQL: which email writes are events, the per-account event log, and the stamp the feed sees.

Each account has its own sequence of events, ``1, 2, 3, ...``, in the log (the
``event_log`` table) under the primary key ``[owner, seq]``.  An event takes the
seq after its owner's newest and is inserted with that key; two writers that
took the same seq at once collide on the key, and the one that lost tries again
(:class:`Recorder`).  So an account's seq ``n`` is in the log before ``n + 1``
is taken, and no document is written by every event: different accounts'
events touch different documents, and shard apart.

A write to ``emails`` and the recording of its events are one query.  Which of
its changes are events is decided in ReQL by :func:`event_kind_reql` (the
mirror of :func:`events.model.event_kind`).  Each event is logged, then its
email is stamped with ``_stamp: {seq, kind}``: the stamp is what the event feed
reports (``emails.changes()`` filtered to new stamps), so a client that hears
of an event can read its email, and the event is in the log (the history)
before it is reported.  An inbound email, whose insert is always an event, is
logged first and inserted with its stamp, which saves a write and means a
refused log leaves no email.  It is one query, not one transaction (RethinkDB
has none across documents): a database failure between the log and the stamp
leaves an event in the history that the feed never reports (the dispatcher reads
it from there when the next one skips it, see ``EventLog.consecutive``).

Concurrent writers of one account's events may have their stamps reported out of
order; the seqs being consecutive, a reader sees a gap and knows the missing
one is in the log already.

:class:`Recorder` runs such writes and prunes the log to about
``history_limit`` events, never removing an account's newest (its position).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Sequence, overload

from gateway.store.base import Change
from gateway.store.documents import Doc, StoreError
from gateway.store.rethink.pool import Pool, r, write_failed
from gateway.store.rethink.template import Template

log = logging.getLogger("gateway.store.rethink")

#: ``{id: [owner, seq], kind, doc, at}``: each account's events; ``at`` (epoch seconds) orders pruning.
#: ``kind`` null marks a seq whose email was never written (a void: no event, and no gap).
LOG = "event_log"
#: The field stamped on an email whose write made an event: ``{seq, kind}``; never shown.
STAMP = "_stamp"
#: The earlier layout (one counter for every event, its stamps under ``_event``): read only to recognise
#: its cursors, and its stamps never shown.
LEGACY_EVENTS, LEGACY_COUNTERS, LEGACY_STAMP = "events", "counters", "_event"
#: Prune the log after this many events (or fewer when history_limit is small).
PRUNE_EVERY = 1000
#: How many times a write whose event collided with another writer's is tried again.
LOG_ATTEMPTS = 100


@overload
def public(doc: Doc) -> Doc: ...
@overload
def public(doc: None) -> None: ...
@overload
def public(doc: Doc | None) -> Doc | None: ...


def public(doc: Doc | None) -> Doc | None:
    """A document as callers see it: without the backend's event stamps."""
    if doc is not None and (STAMP in doc or LEGACY_STAMP in doc):
        return {k: v for k, v in doc.items() if k != STAMP and k != LEGACY_STAMP}
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
    """Whether a change of the emails feed carries a new event stamp (a new ``_stamp.seq``).  Written
    without ``default``: the server runs it on every write to emails, and a caught error costs it."""
    new, old = change["new_val"], change["old_val"]
    return r.and_(new.ne(None), new.has_fields(STAMP), r.or_(
        old.eq(None), old.has_fields(STAMP).not_(), old[STAMP]["seq"].ne(new[STAMP]["seq"])))


def is_stamp_only(change: Any) -> Any:
    """Whether a change of the emails feed only stamps an event on an email written just before
    (an inserted email is stamped as it is inserted: that change is the caller's write)."""
    return r.and_(change["old_val"].ne(None), is_event(change))


def newest_seq(owner: Any) -> Any:
    """The seq of the owner's newest logged event (0 before the first)."""
    return r.table(LOG).between([owner, r.minval], [owner, r.maxval]).order_by(index=r.desc("id")).limit(1) \
        .coerce_to("array").nth(0)["id"].nth(1).default(0)


def _log_entry(owner: Any, seq: Any, kind: Any, doc: Any) -> Any:
    """Insert the owner's entry ``seq`` (refused if another writer took it)."""
    return r.table(LOG).insert({"id": [owner, seq], "kind": kind, "doc": doc, "email": doc["id"],
                                "at": r.now().to_epoch_time()}, conflict="error")


def log_event(event: Any, stamp: bool) -> Any:
    """Append ``event`` (``{owner, kind, doc, ref}``) to its owner's log, and with ``stamp``
    stamp its email: ``{logged: [[ref, seq]]}``, or ``{failed: [[ref, error]]}`` (mostly a collision
    with another writer, to be tried again).

    It takes the seq after the owner's newest, read in the same query (a range of the log's
    primary key: one shard).  Never a seq remembered from before: the log is pruned from its
    oldest entries, so a seq that was taken may be free again, and taking it would number an
    event below ones already reported.
    """
    owner = event["owner"]

    def attempt(seq: Any) -> Any:
        return _log_entry(owner, seq, event["kind"], event["doc"])

    def logged(seq: Any) -> Any:
        done = {"logged": [[event["ref"], seq]]}
        if not stamp:
            return done
        return r.table("emails").get(event["doc"]["id"]).update(
            {STAMP: r.literal({"seq": seq, "kind": event["kind"]})}).do(lambda _: done)

    return newest_seq(owner).add(1).do(lambda seq: attempt(seq).do(lambda inserted: r.branch(
        inserted["inserted"].eq(1), logged(seq),
        {"failed": [[event["ref"], inserted["first_error"].default("not inserted")]]})))


def log_events(events: Any, stamp: bool) -> Any:
    """:func:`log_event` for each of ``events``, one after another (their outcomes' lists joined)."""
    return r.expr(events).for_each(lambda event: log_event(event, stamp))


def _events_of(entries: Any, kinds: Any) -> Any:
    """The changes that are events (with an owner to log them under), as :func:`log_events` takes them."""
    return r.range(entries.count()).filter(
        lambda i: r.and_(kinds.nth(i).ne(None), entries.nth(i)["new_val"]["owner"].default(None).type_of().eq("STRING"))
    ).map(lambda i: {"owner": entries.nth(i)["new_val"]["owner"], "kind": kinds.nth(i),
                     "doc": entries.nth(i)["new_val"].without(STAMP, LEGACY_STAMP), "ref": i}
          ).coerce_to("array")


def _recorded(result: Any) -> Any:
    """After a write made with ``return_changes``: ``{result, entries, kinds, log}``, its events
    logged and their emails stamped."""
    def real(change: Any) -> Any:
        return ~change.has_fields("error") & (change["old_val"].ne(None) | change["new_val"].ne(None))

    return result["changes"].default([]).filter(real).coerce_to("array").do(
        lambda entries: entries.map(lambda c: event_kind_reql(c["old_val"], c["new_val"])).coerce_to("array").do(
            lambda kinds: _events_of(entries, kinds).do(lambda events: {
                "result": result.without("changes"), "entries": entries, "kinds": kinds,
                "log": r.branch(events.is_empty(), {}, log_events(events, stamp=True))})))


def insert_each(others: Any) -> Any:
    """Insert each of ``others`` (``[{table, doc}]``) on its own: ``{failed: [[table, error]]}`` for those refused."""
    return r.branch(others.is_empty(), {}, others.for_each(
        lambda other: r.table(other["table"]).insert(other["doc"], conflict="error").do(lambda result: r.branch(
            result["inserted"].eq(1), {}, {"failed": [[other["table"], result["first_error"].default("")]]}))))


def _orphan(owner: Any, email_id: Any, kind: Any) -> Any:
    """The seq of an entry an interrupted insert of this email logged before, or None.

    One query is not a transaction: when a database node fails mid-way (say, the emails
    table's primary is gone while the log's is not), the entry can be written and the email
    not.  The sender tries again (SMTP 451), and the retry reuses that entry rather than log
    the email's event a second time.  (A read of the index on every shard: the usual case,
    :func:`_inserted_next`, has no need of it.)
    """
    return r.table(LOG).get_all(email_id, index="email").filter(
        lambda entry: r.and_(entry["id"].nth(0).eq(owner), entry["kind"].eq(kind))
    ).limit(1).coerce_to("array").do(lambda found: r.branch(found.is_empty(), None, found.nth(0)["id"].nth(1)))


def _stamped(doc: Any, event: Any, seq: Any, others: Any) -> Any:
    """Insert the email with the stamp of its logged entry ``seq``, then ``others``; a refused insert
    (the id was taken meanwhile) voids the entry, unless the email that took the id carries that
    very stamp: another attempt at this email (the careful query, :func:`_inserted`) found the entry
    as an interrupted attempt's (:func:`_orphan`) and inserted the email with it first, so the entry
    is that email's event (the batch query, group_commit, voids by the same rule)."""
    emails = r.table("emails")
    return emails.insert(doc.merge({STAMP: {"seq": seq, "kind": event["kind"]}}), conflict="error").do(
        lambda result: r.branch(
            result["inserted"].eq(1),
            {"state": "inserted", "result": result, "seq": seq, "others": insert_each(others)},
            r.branch(emails.get(doc["id"])[STAMP]["seq"].default(None).eq(seq), None,
                     r.table(LOG).get([event["owner"], seq]).update({"kind": None, "doc": None})).do(
                lambda _: {"state": "done", "result": result}),
        ))


def _inserted_next(doc: Any, event: Any, others: Any, before: Any) -> Any:
    """:func:`_inserted` in its usual case, as a query of fewer terms (the server compiles each
    query's terms, and _inserted's cost it about half a millisecond): ``before`` (not empty)
    goes in fresh, so no earlier attempt at this email got as far as the log (nor wrote the
    email), and the email takes the seq after its owner's newest.  Otherwise ``state`` is
    ``again`` and nothing but ``before`` was written: ``collided`` when another writer took
    that seq (try this again, with ``before`` empty: it went in), else :func:`_inserted` is to
    be run."""
    owner = event["owner"]
    return insert_each(before).do(lambda first: r.branch(
        first.has_fields("failed"), {"state": "again"},
        newest_seq(owner).add(1).do(lambda seq: _log_entry(owner, seq, event["kind"], doc).do(lambda logged: r.branch(
            logged["inserted"].eq(1), _stamped(doc, event, seq, others),
            {"state": "again", "collided": True}))),
    ).merge({"before": first}))


def _inserted(doc: Any, event: Any, others: Any, before: Any) -> Any:
    """Insert ``before`` (as :func:`insert_each` does), log an inbound email's event, insert the
    email with its stamp, then insert ``others``: ``{state, result, seq, failed, others, before}``.

    ``state`` is ``inserted``; or ``done`` (nothing logged: the id was taken, ``result`` says so);
    or ``collided`` (nothing written: another writer took the seq, ``failed`` says so).  An insert
    that loses a race for the id after its event was logged voids that entry (unless the winner
    carries it, see :func:`_stamped`); one that finds an entry an interrupted attempt left (see
    :func:`_orphan`) uses it.
    """
    emails, owner = r.table("emails"), event["owner"]

    def stamped(seq: Any) -> Any:
        return _stamped(doc, event, seq, others)

    event = event.merge({"doc": doc})  # sent once, as the email
    return insert_each(before).do(lambda first: emails.get(doc["id"]).eq(None).do(lambda free: r.branch(
        free,
        _orphan(owner, doc["id"], event["kind"]).do(lambda orphan: r.branch(
            orphan.ne(None),
            stamped(orphan),
            log_event(event, stamp=False).do(lambda outcome: r.branch(
                outcome["logged"].default([]).is_empty(),
                {"state": "collided", "failed": outcome["failed"].default([])},
                stamped(outcome["logged"].nth(0).nth(1)))))),
        {"state": "done", "result": emails.insert(doc, conflict="error")},
    )).merge({"before": first}))


#: A write to emails (a term) and the recording of its events, in one query.
RECORDED = Template(_recorded)
#: :func:`_inserted` as one query.
INSERTED_WITH_EVENT = Template(_inserted)
#: :func:`_inserted_next` as one query.
INSERTED_NEXT = Template(_inserted_next)
#: Log (and stamp) events again after a collision.
LOG_EVENTS = Template(lambda events: log_events(events, stamp=True))
#: Drop the oldest events beyond ``limit``, except each account's newest.
PRUNE = Template(lambda limit: r.table(LOG).count().sub(limit).do(lambda excess: r.branch(
    excess.gt(0),
    r.table(LOG).order_by(index="at").limit(excess).filter(
        lambda e: r.table(LOG).between([e["id"].nth(0), e["id"].nth(1).add(1)], [e["id"].nth(0), r.maxval])
        .limit(1).count().gt(0)).delete(durability="soft"),
    {"deleted": 0})))


class Recorder:
    """Runs writes to the emails table with their events logged, and prunes the log."""

    def __init__(self, pool: Pool, history_limit: int,
                 insert_next: Callable[[Doc, Doc, list[Doc], list[Doc]], Awaitable[Doc]] | None = None) -> None:
        self._pool = pool
        self.history_limit = history_limit
        self._events_since_prune = 0
        #: What runs :data:`INSERTED_NEXT` for a new email (group_commit.GroupCommit writes several in one query).
        self._insert_next = insert_next or self._run_inserted_next

    async def _run_inserted_next(self, doc: Doc, event: Doc, others: list[Doc], before: list[Doc]) -> Doc:
        reply: Doc = await self._pool.run(INSERTED_NEXT(doc, event, others, before))
        return reply

    async def write(self, table: str, write: Any) -> tuple[Doc, list[Change]]:
        """Run a write made with ``return_changes``; its result and its changes.

        For the emails table the same query also logs the changes that are events and
        stamps their emails; those come with their ``kind`` (their cursors are the feed's).
        """
        if table != "emails":
            result = await self._pool.run(write)
            return result, [Change(table, c["old_val"], c["new_val"]) for c in real_changes(result)]
        reply = await self._pool.run(RECORDED(write))
        kinds: list[str | None] = reply["kinds"]
        changes = [Change(table, public(entry["old_val"]), public(entry["new_val"]), None, kind)
                   for entry, kind in zip(reply["entries"], kinds)]
        events: dict[int, Doc] = {i: {"owner": c.owner, "kind": c.kind, "doc": c.new, "ref": i}
                                  for i, c in enumerate(changes) if c.kind is not None and isinstance(c.owner, str)}
        outcome = reply["log"]
        for _ in range(LOG_ATTEMPTS):
            failed = outcome.get("failed") or []
            if not failed:
                break
            _collisions(failed)
            outcome = await self._pool.run(LOG_EVENTS([events[ref] for ref, _ in failed]))
        else:
            raise StoreError("rethinkdb: an event kept colliding with other writers' events")
        await self._count_events(len(events))
        return reply["result"], changes

    async def insert_event(self, doc: Doc, owner: str, kind: str, others: Sequence[tuple[str, Doc]] = (),
                           before: Sequence[tuple[str, Doc]] = ()) -> tuple[Doc, list[list[str]], list[list[str]]]:
        """Insert ``before``, log an email's event, insert it with its stamp, then insert ``others``
        (each on its own): the result of the email's insert, and ``[table, error]`` for each of the
        others and of ``before`` refused."""
        rest, first = ([{"table": table, "doc": other} for table, other in docs] for docs in (others, before))
        event = {"owner": owner, "kind": kind, "ref": 0}  # its doc is the email's
        reply: Doc = {"state": "again"}
        attempts = 0
        if first:  # the usual case, in a smaller query
            reply = await self._insert_next(doc, event, rest, first)
            accepted = reply["before"]
            while reply.get("collided") and attempts < LOG_ATTEMPTS:  # another writer took the seq
                attempts += 1
                reply = await self._pool.run(INSERTED_NEXT(doc, event, rest, []))
            reply["before"] = accepted
        while reply["state"] == "again":
            if attempts == LOG_ATTEMPTS:
                raise StoreError("rethinkdb: an event kept colliding with other writers' events")
            attempts += 1
            reply = await self._pool.run(INSERTED_WITH_EVENT(doc, event, rest, first))
            if reply["state"] == "collided":
                _collisions(reply["failed"])
                reply = {"state": "again"}
        if reply["state"] == "inserted":
            await self._count_events(1)
        return reply["result"], reply.get("others", {}).get("failed", []), reply["before"].get("failed", [])

    async def _count_events(self, count: int) -> None:
        """Note ``count`` new events; prune the log now and then."""
        if not count:
            return
        self._events_since_prune += count
        if self._events_since_prune >= min(PRUNE_EVERY, self.history_limit):
            self._events_since_prune = 0
            try:
                await self._pool.run(PRUNE(self.history_limit))
            except StoreError as exc:  # the write itself succeeded; the next prune catches up
                log.warning("pruning the event log failed: %s", exc)


def _collisions(failed: list[list[Any]]) -> None:
    """Raise for a failure to log that is not a collision with another writer (which is tried again)."""
    for _, error in failed:
        if "Duplicate primary key" not in error:
            raise write_failed("logging an event", error)
