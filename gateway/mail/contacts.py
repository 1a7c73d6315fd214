"""Contacts: an account's address book, one contact per address."""

from __future__ import annotations

from typing import Any

from gateway.errors import Taken
from gateway.ids import new_id, now_iso
from gateway.mail.documents import new_contact
from gateway.store import Doc, Documents, Query


class Contacts:
    """One account's contacts (``owner`` is its id)."""

    def __init__(self, store: Documents, owner: str) -> None:
        self.store = store
        self.owner = owner

    async def _check_unique(self, email: str, except_id: str | None = None) -> None:
        same = await self.store.find("contacts", Query({"owner": self.owner, "email": email}))
        if any(c["id"] != except_id for c in same):
            raise Taken("contact_exists", f"A contact with address '{email}' exists")

    @staticmethod
    def _normal(fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        if "email" in fields:
            fields["email"] = fields["email"].lower()
        if "name" in fields:
            fields["name"] = fields["name"].strip()
        return fields

    async def create(self, fields: dict[str, Any]) -> Doc:
        """A new contact (``name``, ``email``, optional ``notes``); :class:`Taken` for an address in the book."""
        fields = self._normal(fields)
        await self._check_unique(fields["email"])
        contact = new_contact(new_id(), self.owner, fields)
        await self.store.insert("contacts", contact)
        return contact

    async def update(self, contact: Doc, fields: dict[str, Any]) -> Doc:
        fields = self._normal(fields)
        if "email" in fields:
            await self._check_unique(fields["email"], except_id=contact["id"])
        return await self.store.update("contacts", contact["id"], {**fields, "updated": now_iso()}) or contact
