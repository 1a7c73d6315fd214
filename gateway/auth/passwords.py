"""Passwords: Argon2id hashing off the event loop, and the rules a new password must pass."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

COMMON_PASSWORDS = frozenset(
    {"password", "password1", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123",
     "iloveyou", "letmein1", "abcdefgh", "abc12345", "passw0rd", "football", "baseball", "welcome1"}
)


def password_problem(password: str, username: str) -> str | None:
    """Why a password is too weak, or None."""
    if len(password) < 8:
        return "must be at least 8 characters long"
    if len(set(password)) < 4:
        return "must use at least 4 different characters"
    if password.lower() in COMMON_PASSWORDS or (username and username in password.lower()):
        return "is too easy to guess"
    return None


class Passwords:
    """Argon2id hashing in a thread, so a login never stalls other requests."""

    def __init__(self, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_kib)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash (unknown user) it takes as long and fails."""

        def check() -> bool:
            if hashed is None:
                self._dummy = self._dummy or self._hasher.hash("not a password")
                self._hasher.verify(self._dummy, "not a password")
                return False
            try:
                return self._hasher.verify(hashed, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(None, check)
