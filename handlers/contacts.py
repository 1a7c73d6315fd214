"""Contacts: the account's address book."""

from __future__ import annotations

from gateway.ids import new_id, now_iso
from gateway.mailbox import public
from gateway.store import Doc, Query
from handlers.base import APIError, APIHandler, Field
from handlers.emails import ADDRESS


def contact_fields(create: bool) -> dict[str, Field]:
    return {
        "name": Field(str, required=create, max_length=256,
                      check=lambda v: None if v.strip() else "must not be empty"),
        "email": Field(str, required=create, max_length=320,
                       check=lambda v: None if ADDRESS.fullmatch(v) else "must be an email address"),
        "notes": Field(str, max_length=10000),
    }


class ContactBase(APIHandler):
    async def check_unique(self, email: str, except_id: str | None = None) -> None:
        same = await self.store.find("contacts", Query({"owner": self.account["id"], "email": email.lower()}))
        if any(c["id"] != except_id for c in same):
            raise APIError(409, "contact_exists", f"A contact with address '{email}' exists")


class ContactsHandler(ContactBase):
    """``/contacts``: list (paged) and create."""

    async def get(self) -> None:
        query = self.page({"owner": self.account["id"]}, {"name", "email", "created"}, "name")
        self.reply(contacts=[public(c) for c in await self.list_page("contacts", query)])

    async def post(self) -> None:
        body = self.body_fields(contact_fields(create=True))
        body["email"] = body["email"].lower()
        body["name"] = body["name"].strip()
        await self.check_unique(body["email"])
        now = now_iso()
        contact: Doc = {"id": new_id(), "owner": self.account["id"], "notes": "", **body, "created": now, "updated": now}
        await self.store.insert("contacts", contact)
        self.reply(201, contact=public(contact))


class ContactHandler(ContactBase):
    """``/contacts/{id}``: read, update, delete."""

    async def get(self, contact_id: str) -> None:
        self.reply(contact=public(await self.owned("contacts", contact_id, "Contact")))

    async def put(self, contact_id: str) -> None:
        contact = await self.owned("contacts", contact_id, "Contact")
        body = self.body_fields(contact_fields(create=False), partial=True)
        if "email" in body:
            body["email"] = body["email"].lower()
            await self.check_unique(body["email"], except_id=contact["id"])
        if "name" in body:
            body["name"] = body["name"].strip()
        updated = await self.store.update("contacts", contact["id"], {**body, "updated": now_iso()})
        self.reply(contact=public(updated or contact))

    async def delete(self, contact_id: str) -> None:
        contact = await self.owned("contacts", contact_id, "Contact")
        await self.store.delete("contacts", contact["id"])
        self.reply(message="Contact deleted")


routes = [(r"/contacts", ContactsHandler), (r"/contacts/([^/]+)", ContactHandler)]
