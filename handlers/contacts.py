"""Contacts: the account's address book (:class:`gateway.mail.contacts.Contacts`)."""

from __future__ import annotations

from gateway.mail.addresses import ADDRESS
from gateway.mail.contacts import Contacts
from gateway.store import public
from handlers.base import APIHandler, Field


def contact_fields(create: bool) -> dict[str, Field]:
    return {
        "name": Field(str, required=create, max_length=256,
                      check=lambda v: None if v.strip() else "must not be empty"),
        "email": Field(str, required=create, max_length=320,
                       check=lambda v: None if ADDRESS.fullmatch(v) else "must be an email address"),
        "notes": Field(str, max_length=10000),
    }


class ContactsHandler(APIHandler):
    """``/contacts``: list (paged) and create."""

    direct_methods = frozenset({"GET"})

    async def get(self) -> None:
        query = self.page({"owner": self.account["id"]}, {"name", "email", "created"}, "name")
        self.reply(contacts=[public(c) for c in await self.list_page("contacts", query)])

    async def post(self) -> None:
        body = self.body_fields(contact_fields(create=True))
        contact = await Contacts(self.store, self.account["id"]).create(body)
        self.reply(201, contact=public(contact))


class ContactHandler(APIHandler):
    """``/contacts/{id}``: read, update, delete."""

    async def get(self, contact_id: str) -> None:
        self.reply(contact=public(await self.owned("contacts", contact_id, "Contact")))

    async def put(self, contact_id: str) -> None:
        contact = await self.owned("contacts", contact_id, "Contact")
        body = self.body_fields(contact_fields(create=False), partial=True)
        updated = await Contacts(self.store, self.account["id"]).update(contact, body)
        self.reply(contact=public(updated))

    async def delete(self, contact_id: str) -> None:
        contact = await self.owned("contacts", contact_id, "Contact")
        await self.store.delete("contacts", contact["id"])
        self.reply(message="Contact deleted")


routes = [(r"/contacts", ContactsHandler), (r"/contacts/([^/]+)", ContactHandler)]
