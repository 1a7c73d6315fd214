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

import logging

from gateway.ids import iso_from_epoch, now_iso
from gateway.mail.addresses import address_of
from gateway.mail.documents import delivered_fields, inbound_copy
from gateway.mail.mailbox import add_email, copy_id, load_message, local_account
from gateway.mail.relay import Failure, Relay, send_through
from gateway.metrics import Metrics
from gateway.store import Conflict, Doc, Documents, StoreError
from gateway.store.leased_queue import LeasedQueue, retry_due

log = logging.getLogger("gateway.delivery")

CONCURRENT_DELIVERIES = 8
#: The queue: outbound emails waiting for an attempt.
QUEUED = {"direction": "out", "status": "queued"}


def undelivered(email: Doc) -> list[str]:
    """The addresses an outbound email has yet to reach (To, Cc and Bcc, once each, without display names)."""
    done = set(email.get("delivered_to", []))
    recipients = email.get("to", []) + email.get("cc", []) + email.get("bcc", [])
    return [a for a in dict.fromkeys(address_of(r) for r in recipients) if a not in done]


class PermanentFailure(Exception):
    """This recipient will never accept this email."""


class DeliveryWorker:
    """Delivers the queue in the background; ``start()`` resumes what a previous run left.

    The queue's mechanics (feed, schedule, claim, lease, release) are a
    :class:`~gateway.store.leased_queue.LeasedQueue` over the emails table; this
    class is what is done with each claimed email.
    """

    def __init__(self, store: Documents, domain: str, relay: Relay | None, attempts: int,
                 backoff: float, lease: float = 300.0, metrics: Metrics | None = None) -> None:
        self.store = store
        self.domain = domain.lower()
        self.relay = relay
        self.max_attempts = attempts
        self.backoff = backoff
        self.metrics = metrics
        self.queue = LeasedQueue(store, "emails", "delivery queue", self._attempt, QUEUED, lease=lease,
                                 concurrency=CONCURRENT_DELIVERIES)
        self.queue_feed = self.queue.feed

    async def start(self) -> None:
        await self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    async def release(self, within: float) -> None:
        """Stop, letting running deliveries finish for up to ``within`` seconds, and put back in the
        queue what this process still has claimed (a gateway draining before it stops)."""
        await self.queue.release(within)

    def pending(self) -> int:
        """Emails this process has scheduled or is delivering (the queue as it sees it)."""
        return self.queue.pending()

    async def _attempt(self, email: Doc) -> None:
        """One delivery attempt of a claimed email."""
        if self.metrics is not None:
            self.metrics.delivery_attempts.inc()
        try:
            await self._deliver(email)
        except StoreError:
            raise
        except Exception:
            log.exception("delivery of %s failed unexpectedly", email["id"])
            await self._retry_or_fail(email, {address: Failure(False, None, "internal error during delivery")
                                              for address in undelivered(email)})

    async def _deliver(self, email: Doc) -> None:
        email = await load_message(self.store, email)  # the message as composed, for relay and local copies
        done = list(email.get("delivered_to", []))
        pending = undelivered(email)
        failures: dict[str, Failure] = {}
        external = [a for a in pending if a.rpartition("@")[2].lower() != self.domain]
        for address in [a for a in pending if a not in external]:
            try:
                await self._deliver_locally(email, address)
                done.append(address)
                await self.store.update("emails", email["id"], {"delivered_to": done})
            except PermanentFailure as exc:
                failures[address] = Failure(True, 550, str(exc))
        if external:
            accepted, failed = await send_through(self.relay, email, external)
            done.extend(accepted)
            if accepted:
                await self.store.update("emails", email["id"], {"delivered_to": done})
            failures.update(failed)
        if not failures:
            await self.store.update("emails", email["id"], {
                "status": "delivered", "delivered_at": now_iso(), "last_error": None, "next_attempt_at": None,
                "failures": [], "attempts": email.get("attempts", 0) + 1})
            log.info("delivered %s to %d recipient(s)", email["id"], len(done))
            return
        await self._retry_or_fail(email, failures)

    async def _retry_or_fail(self, email: Doc, failures: dict[str, Failure]) -> None:
        """Record a failed attempt: ``deferred`` (queued again, for later) while a failure is temporary
        and attempts remain, else ``failed``.  Each makes an event with ``failures``, per recipient."""
        attempts = email.get("attempts", 0) + 1
        # temporary failures first: a deferral's event names the reply that made it wait
        ordered = sorted(failures.items(), key=lambda item: item[1].permanent)
        reason = "; ".join(f"{a}: {f.reason()}" for a, f in ordered)
        recorded = {"attempts": attempts, "last_error": reason, "last_attempt_at": now_iso(),
                    "failures": [{"recipient": a, "code": f.code, "text": f.text, "permanent": f.permanent}
                                 for a, f in ordered]}
        give_up = all(f.permanent for f in failures.values()) or attempts >= self.max_attempts
        if self.metrics is not None:
            self.metrics.delivery_failures.labels("failed" if give_up else "retry").inc()
        if give_up:
            await self.store.update("emails", email["id"], {
                **recorded, "status": "failed", "next_attempt_at": None, "failed_at": recorded["last_attempt_at"]})
            log.warning("email %s failed after %d attempt(s): %s", email["id"], attempts, reason)
            return
        due = retry_due(self.backoff, attempts)
        log.info("email %s: attempt %d failed (%s); retrying at %s", email["id"], attempts, reason, iso_from_epoch(due))
        await self.store.update("emails", email["id"], {**recorded, "status": "queued", "next_attempt_at": due})

    async def _deliver_locally(self, email: Doc, address: str) -> None:
        owner = await local_account(self.store, address, self.domain)
        if owner is None:
            raise PermanentFailure("no such local account")
        try:
            await add_email(self.store, inbound_copy(delivered_fields(email), owner, copy_id(email["id"], owner)))
        except Conflict:
            pass  # stored by an earlier attempt
