"""Outbound mail: delivers queued emails to local accounts and, for other addresses, through an SMTP relay.

The queue is the emails table itself (``direction: out``, ``status: queued``):
the worker claims an email atomically (``queued`` -> ``sending``), delivers it
to the recipients not yet in its ``delivered_to``, and records each recipient
as soon as it is done, so a restart resumes where it stopped and sends nothing
twice that the relay accepted.  A failed attempt is retried with doubling
backoff up to ``delivery_attempts``, then the email is ``failed`` with the reason.
A local recipient's copy has an id derived from the email and the account, so
delivering it twice stores it once.

Each process follows a feed of the emails entering the queue (filtered by the
store).  With a shared store (several gateway processes on one RethinkDB), every
process watches the queue and the atomic claim makes exactly one deliver each
email; a claim carries its time, and one older than ``lease`` seconds (its
process died) is put back in the queue by whichever process sweeps first.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.ids import iso_from_epoch, now_iso
from gateway.mail.addresses import address_of
from gateway.mail.documents import delivered_fields, inbound_copy
from gateway.mail.mailbox import add_email, copy_id, load_message, local_account
from gateway.mail.relay import Relay, send_through
from gateway.metrics import Metrics
from gateway.store import Change, Conflict, Doc, Documents, Query, StoreError
from gateway.store.follow import Follower

log = logging.getLogger("gateway.delivery")

CONCURRENT_DELIVERIES = 8
#: The queue: outbound emails waiting for an attempt.
QUEUED = {"direction": "out", "status": "queued"}


class PermanentFailure(Exception):
    """This recipient will never accept this email."""


class DeliveryWorker:
    """Delivers the queue in the background; ``start()`` resumes what a previous run left."""

    def __init__(self, store: Documents, domain: str, relay: Relay | None, attempts: int,
                 backoff: float, lease: float = 300.0, metrics: Metrics | None = None) -> None:
        self.store = store
        self.domain = domain.lower()
        self.relay = relay
        self.max_attempts = attempts
        self.backoff = backoff
        self.lease = lease
        self.metrics = metrics
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._claims: dict[str, float] = {}  # email id -> the claimed_at of this process's claim on it
        self._slots = asyncio.Semaphore(CONCURRENT_DELIVERIES)
        # the store filters the feed: only emails entering the queue reach this process
        self.queue_feed = Follower(lambda: store.changes("emails", QUEUED), "delivery queue feed").add(
            "delivery queue", self._changed, self._rescan)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the queue and resume it: the feed is live first, so nothing queued in between is missed."""
        await self.queue_feed.start()
        # An embedded store is this process's alone: what it had claimed when it stopped is unfinished.
        await self._requeue_claims(older_than=None if not self.store.shared else self.lease)
        await self._rescan()
        if self.store.shared:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def stop(self) -> None:
        await self.queue_feed.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def pending(self) -> int:
        """Emails this process has scheduled or is delivering (the queue as it sees it)."""
        return len(self._timers) + len(self._running)

    async def _changed(self, change: Change) -> None:
        new = change.new
        if new and (change.old is None or change.old.get("status") != "queued"):
            self.schedule(new)

    async def _rescan(self) -> None:
        """Schedule everything queued (at start, and after the queue feed was down)."""
        for email in await self.store.find("emails", Query(QUEUED)):
            self.schedule(email)

    async def _requeue_claims(self, older_than: float | None) -> None:
        """Put claimed emails back in the queue: all of them, or those claimed over ``older_than`` seconds ago."""
        for email in await self.store.find("emails", Query({"direction": "out", "status": "sending"})):
            claimed = email.get("claimed_at")
            if older_than is None or not isinstance(claimed, (int, float)) or claimed < time.time() - older_than:
                if await self.store.update("emails", email["id"], {"status": "queued"},
                                           only_if={"status": "sending", "claimed_at": claimed}):
                    log.info("email %s: claim from %s released", email["id"], claimed)

    async def _sweep(self) -> None:
        """On a shared store: release the claims of processes that died, now and then."""
        while True:
            await asyncio.sleep(self.lease / 4)
            try:
                await self._requeue_claims(older_than=self.lease)
            except StoreError as exc:
                log.warning("claim sweep skipped: %s", exc)

    def schedule(self, email: Doc) -> None:
        """Attempt delivery when the email is due."""
        if email["id"] in self._timers:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, float(email.get("next_attempt_at") or 0) - time.time())
        self._timers[email["id"]] = loop.call_later(delay, self._launch, email["id"])

    def _launch(self, email_id: str) -> None:
        del self._timers[email_id]
        task = asyncio.ensure_future(self._attempt(email_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _attempt(self, email_id: str) -> None:
        async with self._slots:
            claimed_at = time.time()
            try:
                email = await self.store.update("emails", email_id, {"status": "sending", "claimed_at": claimed_at},
                                                only_if={"status": "queued"})
                if email is None:
                    return  # delivered, deleted or claimed by another worker meanwhile
                self._claims[email_id] = claimed_at
                if self.metrics is not None:
                    self.metrics.delivery_attempts.inc()
                try:
                    await self._deliver(email)
                except StoreError:
                    raise
                except Exception:
                    log.exception("delivery of %s failed unexpectedly", email_id)
                    await self._retry_or_fail(email, "internal error during delivery", permanent=False)
            except StoreError as exc:
                # the claim (if made) is released by the lease sweep, or at the next start
                log.warning("delivery of %s interrupted: %s", email_id, exc)
            finally:
                self._claims.pop(email_id, None)

    async def release(self, within: float) -> None:
        """Stop, letting running deliveries finish for up to ``within`` seconds, and put back in the
        queue what this process still has claimed, so another process takes it at once rather than
        after the lease (a gateway draining before it stops)."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=within)
        claims = dict(self._claims)
        await self.stop()
        for email_id, claimed_at in claims.items():
            try:
                if await self.store.update("emails", email_id, {"status": "queued"},
                                           only_if={"status": "sending", "claimed_at": claimed_at}):
                    log.info("email %s: claim released for another process", email_id)
            except StoreError as exc:
                log.warning("email %s: claim not released (%s); the lease frees it", email_id, exc)

    async def _deliver(self, email: Doc) -> None:
        email = await load_message(self.store, email)  # the message as composed, for relay and local copies
        done = list(email.get("delivered_to", []))
        recipients = email.get("to", []) + email.get("cc", []) + email.get("bcc", [])
        pending = [a for a in dict.fromkeys(address_of(r) for r in recipients) if a not in done]
        temporary: dict[str, str] = {}
        permanent: dict[str, str] = {}
        external = [a for a in pending if a.rpartition("@")[2].lower() != self.domain]
        for address in [a for a in pending if a not in external]:
            try:
                await self._deliver_locally(email, address)
                done.append(address)
                await self.store.update("emails", email["id"], {"delivered_to": done})
            except PermanentFailure as exc:
                permanent[address] = str(exc)
        if external:
            accepted, failed = await send_through(self.relay, email, external)
            done.extend(accepted)
            if accepted:
                await self.store.update("emails", email["id"], {"delivered_to": done})
            for address, (is_permanent, reason) in failed.items():
                (permanent if is_permanent else temporary)[address] = reason
        if not temporary and not permanent:
            await self.store.update("emails", email["id"], {
                "status": "delivered", "delivered_at": now_iso(), "last_error": None, "next_attempt_at": None,
                "attempts": email.get("attempts", 0) + 1})
            log.info("delivered %s to %d recipient(s)", email["id"], len(done))
            return
        reason = "; ".join(f"{a}: {r}" for a, r in {**permanent, **temporary}.items())
        await self._retry_or_fail(email, reason, permanent=not temporary)

    async def _retry_or_fail(self, email: Doc, reason: str, permanent: bool) -> None:
        attempts = email.get("attempts", 0) + 1
        if self.metrics is not None:
            self.metrics.delivery_failures.labels("failed" if permanent or attempts >= self.max_attempts
                                                  else "retry").inc()
        if permanent or attempts >= self.max_attempts:
            await self.store.update("emails", email["id"], {
                "status": "failed", "attempts": attempts, "last_error": reason, "next_attempt_at": None,
                "failed_at": now_iso()})
            log.warning("email %s failed after %d attempt(s): %s", email["id"], attempts, reason)
            return
        due = time.time() + self.backoff * 2 ** (attempts - 1)
        log.info("email %s: attempt %d failed (%s); retrying at %s", email["id"], attempts, reason, iso_from_epoch(due))
        await self.store.update("emails", email["id"], {
            "status": "queued", "attempts": attempts, "last_error": reason, "next_attempt_at": due})

    async def _deliver_locally(self, email: Doc, address: str) -> None:
        owner = await local_account(self.store, address, self.domain)
        if owner is None:
            raise PermanentFailure("no such local account")
        try:
            await add_email(self.store, inbound_copy(delivered_fields(email), owner, copy_id(email["id"], owner)))
        except Conflict:
            pass  # stored by an earlier attempt
