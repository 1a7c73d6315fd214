"""Webhooks: an account's events posted to its HTTP endpoints, signed per Standard Webhooks.

- ``documents.py``: the shapes of a webhook, a queued job and a recorded attempt;
- ``destinations.py``: which URLs and addresses a webhook may reach (checked at create and after DNS);
- ``signing.py``: the body and the ``webhook-*`` headers of one attempt;
- ``sender.py``: one POST, bounded in time and size, never following a redirect;
- ``registry.py``: :class:`Webhooks`, what the API does (create, list, update, delete, test, attempts);
- ``queue.py``: :class:`WebhookQueue`, the store's event feed to durable jobs to attempts.
"""

from gateway.webhooks.queue import WebhookQueue
from gateway.webhooks.registry import Webhooks

__all__ = ["WebhookQueue", "Webhooks"]
