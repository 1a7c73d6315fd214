"""The HTTP API: one module per resource, each exporting its ``routes``."""

from __future__ import annotations

from typing import Any

from handlers import accounts, contacts, email_content, emails, health, labels, root, threads, tokens, webhooks

RESOURCE_MODULES = (root, health, accounts, tokens, emails, email_content, threads, labels, contacts, webhooks)


def api_routes() -> list[tuple[str, Any]]:
    """Every route of the JSON API, in one table."""
    return [route for module in RESOURCE_MODULES for route in module.routes]
