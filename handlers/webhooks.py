"""Webhooks: where the account's events are posted (:class:`gateway.webhooks.Webhooks`; docs/webhooks.md)."""

from __future__ import annotations

from gateway.webhooks import Webhooks
from handlers.base import APIHandler, Field


def webhook_fields(create: bool) -> dict[str, Field]:
    """The JSON types of a webhook's fields; their rules (URL, event kinds, detail) are the service's."""
    fields = {
        "url": Field(str, required=create),
        "events": Field(list, items=str, nullable=True),
        "description": Field(str, max_length=500),
        "detail": Field(str),
    }
    if not create:
        fields["enabled"] = Field(bool)
    return fields


class WebhookHandler(APIHandler):
    @property
    def webhooks(self) -> Webhooks:
        return self.state.webhooks


class WebhooksHandler(WebhookHandler):
    """``/webhooks``: list and create (the answer to a create is the only one with the signing secret)."""

    async def get(self) -> None:
        self.reply(webhooks=await self.webhooks.of_account(self.account["id"]))

    async def post(self) -> None:
        body = self.body_fields(webhook_fields(create=True))
        self.reply(201, webhook=await self.webhooks.create(self.account["id"], body))


class WebhookResourceHandler(WebhookHandler):
    """``/webhooks/{id}``: read, update (url, events, description, detail, enabled), delete."""

    async def get(self, webhook_id: str) -> None:
        self.reply(webhook=await self.webhooks.get(self.account["id"], self.path_id(webhook_id, "Webhook")))

    async def put(self, webhook_id: str) -> None:
        body = self.body_fields(webhook_fields(create=False), partial=True)
        self.reply(webhook=await self.webhooks.update(self.account["id"], self.path_id(webhook_id, "Webhook"), body))

    async def delete(self, webhook_id: str) -> None:
        await self.webhooks.delete(self.account["id"], self.path_id(webhook_id, "Webhook"))
        self.reply(message="Webhook deleted")


class WebhookTestHandler(WebhookHandler):
    """``/webhooks/{id}/test``: post a ``test`` event now; the answer is the attempt's record."""

    async def post(self, webhook_id: str) -> None:
        self.reply(delivery=await self.webhooks.test(self.account["id"], self.path_id(webhook_id, "Webhook")))


class WebhookDeliveriesHandler(WebhookHandler):
    """``/webhooks/{id}/deliveries``: the recent attempts, newest first (``limit``, at most 100)."""

    async def get(self, webhook_id: str) -> None:
        limit = self.int_argument("limit", 50, 1, 100)
        self.reply(deliveries=await self.webhooks.attempts(self.account["id"], self.path_id(webhook_id, "Webhook"),
                                                           limit))


routes = [
    (r"/webhooks", WebhooksHandler),
    (r"/webhooks/([^/]+)", WebhookResourceHandler),
    (r"/webhooks/([^/]+)/test", WebhookTestHandler),
    (r"/webhooks/([^/]+)/deliveries", WebhookDeliveriesHandler),
]
