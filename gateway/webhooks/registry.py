"""What the API does with webhooks: create (with a secret shown once), list, read, update, delete,
post a test event now, and show recent attempts."""

from __future__ import annotations

from typing import Any

from events.model import DETAIL_LEVELS, EVENT_KINDS
from gateway.errors import Invalid, NotFound
from gateway.ids import new_id, now_iso
from gateway.store import Doc, In, Query, Store, public
from gateway.webhooks import signing
from gateway.webhooks.destinations import Destinations
from gateway.webhooks.documents import new_attempt, new_webhook, public_webhook
from gateway.webhooks.sender import Outcome, Sender

#: Webhooks one account may have.
MAX_PER_ACCOUNT = 20
#: Attempts kept per webhook for ``GET /webhooks/{id}/deliveries`` (older ones are pruned).
ATTEMPTS_KEPT = 100
#: How many records of a webhook this process makes between two trims of its oldest.
TRIM_EVERY = 20


def check_events(events: Any) -> list[str] | None:
    """A webhook's ``events``: a non-empty list of event kinds, or None for all of them."""
    if events is None:
        return None
    if not isinstance(events, list) or not events or not all(isinstance(e, str) and e in EVENT_KINDS for e in events):
        raise Invalid("invalid_field", f"Field 'events' must list some of: {', '.join(EVENT_KINDS)}")
    return list(dict.fromkeys(events))


def check_detail(detail: Any) -> str:
    if detail not in DETAIL_LEVELS:
        raise Invalid("invalid_field", f"Field 'detail' must be one of: {', '.join(DETAIL_LEVELS)}")
    return str(detail)


class Webhooks:
    """The webhooks of every account (each call names its owner)."""

    def __init__(self, store: Store, destinations: Destinations, sender: Sender) -> None:
        self.store = store
        self.destinations = destinations
        self.sender = sender
        self._recorded: dict[str, int] = {}  # webhook id -> attempts recorded here (see record)

    async def create(self, owner: str, fields: dict[str, Any]) -> Doc:
        """A new webhook, with its secret (the only time the secret is shown)."""
        if await self.store.count("webhooks", {"owner": owner}) >= MAX_PER_ACCOUNT:
            raise Invalid("too_many_webhooks", f"An account may have at most {MAX_PER_ACCOUNT} webhooks")
        fields = await self._checked(fields)
        # it posts the events after the newest one now: not the account's past
        cursor = await self.store.latest_event_cursor(owner)
        webhook = new_webhook(new_id(), owner, fields, signing.new_secret(), cursor)
        await self.store.insert("webhooks", webhook)
        return {**public_webhook(webhook), "secret": webhook["secret"]}

    async def get(self, owner: str, webhook_id: str) -> Doc:
        """The owner's webhook as the owner sees it (without its secret); :class:`NotFound` otherwise."""
        return public_webhook(await self._own(owner, webhook_id))

    async def _own(self, owner: str, webhook_id: str) -> Doc:
        webhook = await self.store.get("webhooks", webhook_id)
        if webhook is None or webhook.get("owner") != owner:
            raise NotFound("not_found", "Webhook not found")
        return webhook

    async def of_account(self, owner: str) -> list[Doc]:
        found = await self.store.find("webhooks", Query({"owner": owner}, order_by=[("created", False)]))
        return [public_webhook(w) for w in found]

    async def update(self, owner: str, webhook_id: str, fields: dict[str, Any]) -> Doc:
        """Change url, events, description, detail or enabled; enabling again clears the failure count."""
        webhook = await self._own(owner, webhook_id)
        changes = await self._checked(fields)
        if changes.get("enabled") is True and not webhook.get("enabled"):
            # enabled again: from now on, not the events of while it was off
            changes.update(consecutive_failures=0, disabled_reason=None,
                           cursor=await self.store.latest_event_cursor(owner))
        updated = await self.store.update("webhooks", webhook["id"], {**changes, "updated": now_iso()})
        return public_webhook(updated or webhook)

    async def delete(self, owner: str, webhook_id: str) -> None:
        """Delete the webhook; its queued jobs end (the queue finds it gone) and its records go."""
        webhook = await self._own(owner, webhook_id)
        await self.store.delete("webhooks", webhook["id"])
        await self.store.delete_where("webhook_attempts", {"webhook": webhook["id"]})

    async def test(self, owner: str, webhook_id: str) -> Doc:
        """Post a ``test`` event to the webhook now (enabled or not), record the attempt and return it."""
        webhook = await self._own(owner, webhook_id)
        job = {"id": "msg_test_" + new_id(), "owner": owner, "webhook": webhook["id"], "type": "test",
               "cursor": None, "timestamp": now_iso(),
               "data": {"type": "test", "webhook": webhook["id"], "message": "A test event: it needs no action."}}
        outcome = await self.post(webhook, job, 1)
        return await self.record(job, 1, outcome.ok, outcome.code, outcome.duration_ms, outcome.error)

    async def post(self, webhook: Doc, job: Doc, attempt: int) -> Outcome:
        """Post attempt ``attempt`` of ``job`` to the webhook, signed afresh (its timestamp is signed)."""
        payload = signing.body(job)
        return await self.sender.post(webhook["url"], payload,
                                      signing.headers(webhook["secret"], job["id"], payload, attempt))

    async def attempts(self, owner: str, webhook_id: str, limit: int) -> list[Doc]:
        """The webhook's recent attempts, newest first."""
        webhook = await self._own(owner, webhook_id)
        found = await self.store.find("webhook_attempts", Query({"webhook": webhook["id"]},
                                                                order_by=[("at", True)], limit=limit))
        return [public_attempt(a) for a in found]

    async def record(self, job: Doc, attempt: int, ok: bool, code: int | None, duration_ms: float,
                     error: str | None) -> Doc:
        """Store the record of one attempt; every :data:`TRIM_EVERY` records of a webhook (in this
        process), drop its oldest beyond :data:`ATTEMPTS_KEPT`."""
        doc = new_attempt(new_id(), job, attempt, ok, code, duration_ms, error)
        await self.store.insert("webhook_attempts", doc)
        recorded = self._recorded[job["webhook"]] = self._recorded.get(job["webhook"], 0) + 1
        if recorded % TRIM_EVERY == 0:
            stale = await self.store.find("webhook_attempts", Query(
                {"webhook": job["webhook"]}, order_by=[("at", True)], offset=ATTEMPTS_KEPT))
            if stale:
                await self.store.delete_where("webhook_attempts", {"id": In([old["id"] for old in stale])})
        return public_attempt(doc)

    async def _checked(self, fields: dict[str, Any]) -> dict[str, Any]:
        checked = dict(fields)
        if "url" in checked:
            await self.destinations.check(checked["url"], self.sender.resolver)
        if "events" in checked:
            checked["events"] = check_events(checked["events"])
        if "detail" in checked:
            checked["detail"] = check_detail(checked["detail"])
        return checked


def public_attempt(attempt: Doc) -> Doc:
    return public(attempt, "webhook")
