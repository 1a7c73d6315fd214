"""What the HTTP handlers are handed (through the Application settings): configuration, store and services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.auth import Accounts, Tokens
from gateway.config import Config
from gateway.store import Store
from gateway.webhooks import Webhooks


@dataclass
class State:
    """The one object holding a gateway process's state for its handlers; no module-level globals."""

    config: Config
    store: Store
    tokens: Tokens
    accounts: Accounts
    webhooks: Webhooks
    #: Whether each change feed of the process is open (readiness).
    feeds: Callable[[], dict[str, bool]] = lambda: {}
    #: Set when the process stops taking work (SIGTERM): readiness is false from then on.
    draining: bool = False
    #: API requests (plain and tunneled) being handled right now.
    inflight: int = 0
