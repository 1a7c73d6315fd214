"""Group commit of inbound emails: those that arrive while one is being written go in together, in one query.

The RethinkDB server's CPU, not the gateway's, bounds how many inbound emails
a second the shared store takes, and most of it is paid per write term: one
``insert`` of an array of eight documents costs it less than half as much per
document as eight inserts of one (docs/benchmarks.md, "Issue 16, fifth
round").  An inbound email is four inserts (its raw message, its event's log
entry, the email, a new thread's summary), so :class:`GroupCommit` runs at most
:data:`IN_FLIGHT` recording queries at a time per process: an email that
arrives while they run waits, and all those that waited are then written by
one query (:data:`BATCH`) of four array inserts.  At low load nothing waits, and each
email is written alone, as :func:`~gateway.store.rethink.recording._inserted_next`
(the same query as without group commit).

A batch keeps what a single write promises, each email on its own:

* the seqs: each account's emails in the batch take the seqs after its newest,
  in the batch's order, and their log entries are all in before any of their
  emails is (so before the feed can report one);
* a raw message that was there already (a retried delivery), a seq another
  writer took, an email id that was taken: that email's answer says so, as
  :func:`_inserted_next`'s would, and its caller goes on as it would (the
  careful query, the next seq, a Conflict); the others are written;
* a failure of the whole query fails each email of the batch (SMTP answers 451
  to each, and the senders try again, which the careful query makes safe).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.store.documents import Doc, StoreUnavailable
from gateway.store.rethink.pool import Pool, r
from gateway.store.rethink.recording import INSERTED_NEXT, LOG, STAMP, newest_seq
from gateway.store.rethink.template import Template

#: At most this many emails in one query (each of its inserts stays small; more saves little).
MAX_BATCH = 16
#: Queries of inbound emails at once, per process: more waits less for the one in flight (its four
#: disk flushes in a row), in smaller batches, which cost the server more a message.  Two, measured
#: against one at 200 emails a second (docs/benchmarks.md, "Main after the fifth round's merges"):
#: p50 write-to-client 14-19 against 22-30 ms, p99 48-61 against 62-67 ms, the server's CPU 88-90 against 79-81 %.
IN_FLIGHT = 2
#: Seconds a recording query may go unanswered before its emails are answered "try again later"
#: (SMTP 451).  A query that hangs (a network partition with no reset, a stopped server) would
#: otherwise hold up every inbound email of the process, not only its own.  It may still complete;
#: a sender's retry then finds its raw message there and takes the careful query, which files
#: nothing twice.
QUERY_TIMEOUT = 30.0


def _batch(items: Any, owners: Any, before_table: Any, other_table: Any) -> Any:
    """Insert each item's ``before`` (a document of ``before_table``), log its email's event, insert
    the email with its stamp, then its ``other`` (a document of ``other_table``, or null): four
    array inserts, and few terms run for each item (the server runs them one by one).

    ``items``: ``[{doc, kind, before, other, owner: index in owners, n}]``, no two with the same
    email id or ``before`` id; ``n`` is the item's place among its owner's items (1, 2, ...).  Each
    item takes the seq ``n`` after its owner's newest.  The answer (for :meth:`GroupCommit._write`):
    ``{again}`` when a ``before`` was refused (nothing else written), else ``{seqs,
    logged: [[owner, seq]], refused: [email id], email_error, other_error}``: the entries that went
    in (another writer may have taken a seq), the emails refused (their entries voided), and the
    ``first_error`` of the others' insert, if any was refused.
    """
    count = items.count()

    def others(logged: Any, refused: Any) -> Any:
        wanted = logged.filter(lambda item: item["other"].ne(None) & refused.contains(item["doc"]["id"]).not_())
        return r.branch(other_table.eq(None) | wanted.is_empty(), {},
                        r.table(other_table).insert(wanted.map(lambda item: item["other"]), conflict="error"))

    def emails(seqs: Any, logged: Any) -> Any:
        """Insert the logged items' emails; void the entries of those refused (the id was taken)."""
        return r.table("emails").insert(logged.map(lambda item: item["doc"].merge(
            {STAMP: {"seq": item["seq"], "kind": item["kind"]}})), conflict="error").do(lambda written: r.branch(
                written["errors"].eq(0), [],
                # which: those whose email is not the one stamped with their seq (rare: no terms else)
                logged.filter(lambda item: r.table("emails").get(item["doc"]["id"])[STAMP]["seq"].default(None)
                              .ne(item["seq"]))).do(lambda refused: r.branch(
                    refused.is_empty(), None,
                    r.table(LOG).get_all(r.args(refused.map(lambda item: [item["owner_id"], item["seq"]])))
                    .update({"kind": None, "doc": None})).do(lambda _: others(logged, refused.map(
                        lambda item: item["doc"]["id"]))).do(lambda other: {
                            "seqs": seqs, "refused": refused.map(lambda item: item["doc"]["id"]),
                            "email_error": written["first_error"].default(None),
                            "other_error": other["first_error"].default(None)})))

    def logged_then(at: Any, newest: Any) -> Any:
        """Log every item's event (each seq read once: ``newest`` is bound by ``do``), then the emails."""
        numbered = r.range(count).map(lambda i: items.nth(i).do(lambda item: item.merge({
            "owner_id": owners.nth(item["owner"]), "seq": newest.nth(item["owner"]).add(item["n"])}))).coerce_to("array")
        return numbered.do(lambda entries: r.table(LOG).insert(entries.map(lambda item: {
            "id": [item["owner_id"], item["seq"]], "kind": item["kind"], "doc": item["doc"],
            "email": item["doc"]["id"], "at": at}), conflict="error", return_changes=True).do(lambda log: r.branch(
                log["errors"].eq(0), entries,  # the usual case: no other writer took one of the seqs
                log["changes"].map(lambda change: change["new_val"]["id"]).coerce_to("array").do(
                    lambda keys: entries.filter(lambda item: keys.contains([item["owner_id"], item["seq"]]))),
            ).do(lambda logged: emails(entries.map(lambda item: item["seq"]), logged).merge(
                {"logged": logged.map(lambda item: [item["owner_id"], item["seq"]])}))))

    return r.table(before_table).insert(items.map(lambda item: item["before"]), conflict="error").do(
        lambda befores: r.branch(
            befores["errors"].gt(0), {"again": True},
            owners.map(newest_seq).coerce_to("array").do(
                lambda newest: logged_then(r.now().to_epoch_time(), newest))))


#: :func:`_batch` as one query.
BATCH = Template(_batch)


class GroupCommit:
    """Writes inbound emails as :func:`_inserted_next` does, :data:`IN_FLIGHT` queries at a time per
    process: those that arrive meanwhile go together in the next (:data:`BATCH`)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._waiting: list[tuple[tuple[Any, ...], asyncio.Future[Doc]]] = []
        self._writers: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def insert_next(self, doc: Doc, event: Doc, others: list[Doc], before: list[Doc]) -> Doc:
        """What ``INSERTED_NEXT(doc, event, others, before)`` answers, written alone or in a batch."""
        future: asyncio.Future[Doc] = asyncio.get_running_loop().create_future()
        self._waiting.append(((doc, event, others, before), future))
        if len(self._writers) < IN_FLIGHT:
            writer = asyncio.get_running_loop().create_task(self._write_all())
            self._writers.add(writer)
        return await asyncio.shield(future)  # a cancelled caller leaves the batch as it is

    async def _write_all(self) -> None:
        """Write what waits, a query at a time, until nothing does."""
        try:
            while self._waiting:
                batch = self._next_batch()
                try:
                    try:
                        async with asyncio.timeout(QUERY_TIMEOUT):  # the query itself runs on (Pool.run shields it)
                            if len(batch) == 1:
                                (args, _), = batch
                                answers = [await self._pool.run(INSERTED_NEXT(*args))]
                            else:
                                answers = await self._write(batch)
                    except TimeoutError:
                        raise StoreUnavailable(f"rethinkdb: no answer to the query of {len(batch)} inbound "
                                               f"email(s) within {QUERY_TIMEOUT:g} s") from None
                except BaseException as exc:  # each email of the batch fails with it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:  # at once, not in a done callback: an email that comes meanwhile must start a writer
            self._writers.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _next_batch(self) -> list[tuple[tuple[Any, ...], asyncio.Future[Doc]]]:
        """The first waiting email, and those after it that can go in one query with it: the same
        tables, one document before and at most one after, no id twice.  The rest wait."""
        (head, head_future), rest = self._waiting[0], self._waiting[1:]
        batch, self._waiting = [(head, head_future)], []
        key = _shape(head)
        seen = {head[0]["id"], head[3][0]["doc"]["id"]} if key else set()
        for args, future in rest:
            ids = {args[0]["id"], args[3][0]["doc"]["id"]} if key and _shape(args) == key else None
            if ids is None or ids & seen or len(batch) == MAX_BATCH:
                self._waiting.append((args, future))
            else:
                batch.append((args, future))
                seen |= ids
        return batch

    async def _write(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Doc]]]) -> list[Doc]:
        """Run :data:`BATCH`; each email's answer as :func:`_inserted_next` gives it."""
        before_table, other_table = _shape(batch[0][0]) or ("", None)
        owners: dict[str, int] = {}
        taken: dict[str, int] = {}
        items: list[Doc] = []
        for (doc, event, others, before), _ in batch:
            owner = event["owner"]
            taken[owner] = taken.get(owner, 0) + 1
            items.append({"doc": doc, "kind": event["kind"], "before": before[0]["doc"],
                          "other": others[0]["doc"] if others else None,
                          "owner": owners.setdefault(owner, len(owners)), "n": taken[owner]})
        reply = await self._pool.run(BATCH(items, list(owners), before_table, other_table))
        if reply.get("again"):  # a raw message was there already (or refused): each email as it would alone
            return [{"state": "again", "before": {}} for _ in items]
        logged = {(owner, seq) for owner, seq in reply["logged"]}
        refused = set(reply["refused"])
        answers: list[Doc] = []
        for item, seq, ((_, event, _, _), _) in zip(items, reply["seqs"], batch):
            if (event["owner"], seq) not in logged:  # another writer took the seq
                answers.append({"state": "again", "collided": True, "before": {}})
            elif item["doc"]["id"] in refused:  # the id was taken meanwhile (its entry voided)
                answers.append({"state": "done", "before": {},
                                "result": {"inserted": 0, "errors": 1, "first_error": reply["email_error"] or ""}})
            else:  # a refused other is not known by name: each is checked (a thread's is refreshed)
                failed = [[other_table, reply["other_error"]]] if reply["other_error"] and item["other"] else []
                answers.append({"state": "inserted", "before": {}, "seq": seq,
                                "result": {"inserted": 1, "errors": 0}, "others": {"failed": failed}})
        return answers


def _shape(args: tuple[Any, ...]) -> tuple[str, str | None] | None:
    """The tables of an email that can go in a batch (one document before it, at most one after), or None."""
    _, _, others, before = args
    if len(before) != 1 or len(others) > 1:
        return None
    return before[0]["table"], others[0]["table"] if others else None
