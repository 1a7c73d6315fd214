"""Group commit on RethinkDB: inbound emails filed at once go in together, and each keeps its own answer.

Emails filed in one ``asyncio.gather`` all reach the store before its first query is sent, so
they go in batches (``group_commit.MAX_BATCH`` at most): the entries of one batch carry the same
time (``at``, the query's ``r.now()``), which tells the tests that a batch was written.  Each test makes a RethinkDB store of its own and skips, saying why,
without a RethinkDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, AsyncIterator

import pytest

from gateway.mail.mailbox import add_email
from gateway.store import Conflict, StoreError, StoreUnavailable
from gateway.store.rethink import RethinkStore, r
from gateway.store.rethink import group_commit
from gateway.store.rethink.group_commit import MAX_BATCH
from gateway.store.rethink.recording import LOG
from tests import rethinkdb_server
from tests.conftest import wait_until
from tests.test_rethinkdb_events import email, file_email, log_of


@contextlib.asynccontextmanager
async def opened() -> AsyncIterator[RethinkStore]:
    """A store on a database of its own."""
    store = RethinkStore.from_url(rethinkdb_server.store_url())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def entries(store: RethinkStore, owner: str) -> list[dict[str, Any]]:
    """The owner's log entries in seq order: ``{seq, kind, email, at}``."""
    return list(await store._run(log_of(owner).order_by(index="id").map(lambda e: {
        "seq": e["id"].nth(1), "kind": e["kind"], "email": e["email"], "at": e["at"]}).coerce_to("array")))


async def answers(*filings: Any) -> list[Any]:
    """Each filing's result, or the exception it raised."""
    return list(await asyncio.gather(*filings, return_exceptions=True))


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("in_flight", [1, 2])
async def test_emails_filed_at_once_go_in_batches_each_accounts_numbered_in_order(in_flight: int,
                                                                                 monkeypatch: Any) -> None:
    """Twenty emails of one account at once, in two batches, then (with one query in flight) thirteen
    of three accounts, in one: each is logged once, its account's seqs without a gap, and the feed's stamps are the log's.  With
    one query in flight they are numbered in the order filed; with two (the default), two batches of
    one account race for its seqs, and the one that loses is numbered after the other (emails filed at
    once have no order of their own: they came over separate SMTP connections)."""
    monkeypatch.setattr(group_commit, "IN_FLIGHT", in_flight)
    async with opened() as store:
        ids = await answers(*(file_email(store, "alice", f"m{n}") for n in range(20)))
        logged = await entries(store, "alice")
        assert [e["seq"] for e in logged] == list(range(1, 21))
        if in_flight == 1:
            assert [e["email"] for e in logged] == ids  # in the order filed
            assert len({e["at"] for e in logged[:MAX_BATCH]}) == 1  # one batch wrote these
        else:
            assert sorted(e["email"] for e in logged) == sorted(ids)  # each once
            ids = [e["email"] for e in logged]
        stamps = await store._run(r.table("emails").get_all(*ids).map(
            lambda e: [e["id"], e["_stamp"]["seq"]]).coerce_to("array"))
        assert sorted(stamps, key=lambda pair: pair[1]) == [[i, n] for n, i in enumerate(ids, 1)]
        history = (await store.event_history("alice", None, 100)).changes
        assert [c.new["id"] for c in history] == ids
        if in_flight != 1:
            return

        owners = ["bob", "carol", "alice"]
        ids = await answers(*(file_email(store, owners[n % 3], f"m{n}") for n in range(13)))
        for k, owner in enumerate(owners):
            logged = (await entries(store, owner))[-len(ids[k::3]):]
            first = 21 if owner == "alice" else 1
            assert [e["seq"] for e in logged] == list(range(first, first + len(ids[k::3])))
            assert [e["email"] for e in logged] == ids[k::3]
        assert len({e["at"] for owner in ("bob", "carol") for e in await entries(store, owner)}) == 1  # one batch


@pytest.mark.gen_test(timeout=30)
async def test_an_email_filed_again_in_a_batch_is_a_conflict_and_the_others_go_in() -> None:
    """A retried delivery (its raw message there already) in a batch: that email is answered with a
    Conflict, logged once; the batch's others are written, with no gap."""
    async with opened() as store:
        first = email("alice", "first")
        raw = {"id": first["id"], "owner": "alice", "raw": "Subject: first\r\n\r\n"}
        await store.insert_with("emails", dict(first), before=[("messages", raw)])
        results = await answers(file_email(store, "alice", "a"), file_email(store, "alice", "b"),
                                store.insert_with("emails", dict(first), before=[("messages", raw)]),
                                file_email(store, "alice", "c"))
        assert isinstance(results[2], Conflict)
        logged = await entries(store, "alice")
        # (each of the batch then went alone, as after any refused raw message: in no set order)
        assert [e["email"] for e in logged][0] == first["id"]
        assert sorted(e["email"] for e in logged[1:]) == sorted([results[0], results[1], results[3]])
        assert [e["seq"] for e in logged] == [1, 2, 3, 4]


@pytest.mark.gen_test(timeout=30)
async def test_an_email_id_taken_in_a_batch_voids_its_entry_and_is_a_conflict() -> None:
    """An email whose id is taken though its raw message is new: in a batch its entry is logged and
    then voided (no event, no gap), the email answered with a Conflict, the others written."""
    async with opened() as store:
        taken = email("alice", "taken")
        await store.insert("emails", dict(taken))  # seq 1, without a raw message
        raw = {"id": taken["id"], "owner": "alice", "raw": "Subject: taken\r\n\r\n"}
        results = await answers(file_email(store, "alice", "a"), file_email(store, "alice", "b"),
                                store.insert_with("emails", dict(taken), before=[("messages", raw)]),
                                file_email(store, "alice", "c"))
        assert isinstance(results[2], Conflict)
        logged = await entries(store, "alice")
        assert [(e["seq"], e["kind"]) for e in logged] == [(1, "receipt"), (2, "receipt"), (3, "receipt"),
                                                           (4, None), (5, "receipt")]
        history = await store.event_history("alice", None, 100)
        assert [c.new["id"] for c in history.changes] == [taken["id"], results[0], results[1], results[3]]
        assert history.complete


@pytest.mark.gen_test(timeout=30)
async def test_a_write_that_fails_in_a_batch_fails_that_email_only() -> None:
    """An email the database refuses (a key longer than RethinkDB takes) among others filed at once:
    it alone gets the error (SMTP answers it 451), the others are written.  A query that fails
    fails each email of its batch."""
    async with opened() as store:
        bad = email("alice", "bad")
        bad["id"] = "x" * 200
        results = await answers(file_email(store, "alice", "a"), file_email(store, "alice", "b"),
                                store.insert_with("emails", bad, before=[("messages", {"id": bad["id"], "raw": ""})]),
                                file_email(store, "alice", "c"))
        assert isinstance(results[2], StoreError) and not isinstance(results[2], Conflict)
        logged = await entries(store, "alice")
        assert sorted(e["email"] for e in logged) == sorted([results[0], results[1], results[3]])
        assert [e["seq"] for e in logged] == [1, 2, 3]

        await store.close()  # now the batch's query fails: each of its emails is answered with the failure
        failures = await answers(*(file_email(store, "alice", f"late {n}") for n in range(3)))
        assert all(isinstance(failure, StoreUnavailable) for failure in failures)


@pytest.mark.gen_test(timeout=30)
async def test_two_copies_of_one_message_in_a_batch_share_its_thread() -> None:
    """Two copies of one message (one Message-ID, other bytes) filed at once start the same thread:
    its summary goes in once, and the thread counts both."""
    async with opened() as store:
        def copy(n: int) -> Any:
            return add_email(store, {"owner": "alice", "direction": "in", "status": "received", "labels": ["inbox"],
                                     "subject": "hello", "message_id": "<one@example.org>",
                                     "raw": f"Message-ID: <one@example.org>\r\nSubject: hello\r\n\r\ncopy {n}"})

        filed = await answers(file_email(store, "alice", "first"), copy(1), copy(2))
        assert filed[1]["thread"] == filed[2]["thread"]
        thread = await store.get("threads", filed[1]["thread"])
        assert thread is not None and thread["email_count"] == 2
        assert [e["seq"] for e in await entries(store, "alice")] == [1, 2, 3]
        assert await store._run(r.table(LOG).count()) == 3


@pytest.mark.gen_test(timeout=60)
async def test_a_query_left_unanswered_fails_its_email_and_a_retry_files_it_once(own_rethinkdb: Any,
                                                                                monkeypatch: Any) -> None:
    """The database stops answering (as behind a partition with no reset; here it is sent SIGSTOP): an
    email waiting on a recording query is answered StoreUnavailable once ``QUERY_TIMEOUT`` passes (SMTP
    says 451), so a hung query holds up no email for longer, and the next one is written.  The query
    completes once the database answers again, and the sender's retry then files nothing twice."""
    monkeypatch.setattr(group_commit, "QUERY_TIMEOUT", 1.0)
    store = RethinkStore.from_url(own_rethinkdb.url)
    await store.open()
    try:
        doc = email("alice", "a")

        def filing() -> Any:  # as SMTP intake files it, each attempt with the same raw message
            return store.insert_with("emails", dict(doc), before=[("messages", {
                "id": doc["id"], "owner": "alice", "raw": "Subject: a\r\n\r\n"})])

        own_rethinkdb.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match="no answer"):
                await filing()
        finally:
            own_rethinkdb.process.send_signal(signal.SIGCONT)

        async def written() -> bool:  # the query that got no answer in time completes now (the email last)
            return await store.get("emails", doc["id"]) is not None
        await wait_until(written, timeout=30)
        with pytest.raises(Conflict):  # the retry: there already, filed once
            await filing()
        assert [(e["seq"], e["email"]) for e in await entries(store, "alice")] == [(1, doc["id"])]
        await file_email(store, "alice", "b")  # and the next email goes in as usual
        assert [e["seq"] for e in await entries(store, "alice")] == [1, 2]
    finally:
        await store.close()
