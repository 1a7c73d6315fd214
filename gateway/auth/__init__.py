"""Who may do what: passwords, bearer tokens, and accounts."""

from __future__ import annotations

from gateway.auth.accounts import Accounts, public_account
from gateway.auth.passwords import Passwords
from gateway.auth.tokens import Identity, InvalidToken, Tokens, load_or_create_secret

__all__ = ["Accounts", "Identity", "InvalidToken", "Passwords", "Tokens", "load_or_create_secret", "public_account"]
