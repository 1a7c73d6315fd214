"""The one object that holds a gateway process's state, handed to handlers via the Application settings."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Passwords, Tokens
from gateway.config import Config
from gateway.store import Store


@dataclass
class State:
    """Store, token signer, password hasher and configuration of one process."""

    config: Config
    store: Store
    tokens: Tokens
    passwords: Passwords
