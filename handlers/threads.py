"""Threads: list, read with their emails, relabel, delete."""

from __future__ import annotations

from typing import Any

from gateway.mail.documents import public_email
from gateway.mail.mailbox import delete_emails, update_emails
from gateway.store import Contains, In, Query, public
from handlers.base import APIHandler
from handlers.emails import email_changes, search_filter


class ThreadsHandler(APIHandler):
    """``GET /threads``: the caller's threads, newest activity first; ``q`` keeps those with a matching email."""

    direct_methods = frozenset({"GET"})

    async def get(self) -> None:
        where: dict[str, Any] = {"owner": self.account["id"]}
        label = self.get_query_argument("label", None)
        if label:
            where["labels"] = Contains(label)
        search = search_filter(self)
        if search is not None:
            found = await self.store.find("emails", Query({"owner": self.account["id"], "search": search}))
            where["id"] = In(dict.fromkeys(email["thread"] for email in found))
        query = self.page(where, {"updated", "created", "subject"}, "-updated")
        threads = await self.list_page("threads", query)
        self.reply(threads=[public(t) for t in threads])


class ThreadHandler(APIHandler):
    """``/threads/{id}``: read with emails; ``PUT`` sets labels or read on every email; ``DELETE``."""

    async def emails_of(self, thread: dict) -> list[dict]:
        return await self.store.find(
            "emails", Query({"owner": self.account["id"], "thread": thread["id"]}, [("created", False)])
        )

    async def get(self, thread_id: str) -> None:
        thread = await self.owned("threads", thread_id, "Thread")
        self.reply(thread=public(thread), emails=[public_email(e) for e in await self.emails_of(thread)])

    async def put(self, thread_id: str) -> None:
        thread = await self.owned("threads", thread_id, "Thread")
        changes = await email_changes(self)
        await update_emails(self.store, [(email, changes) for email in await self.emails_of(thread)])
        self.reply(thread=public(await self.store.get("threads", thread["id"]) or thread))

    async def delete(self, thread_id: str) -> None:
        thread = await self.owned("threads", thread_id, "Thread")
        await delete_emails(self.store, await self.emails_of(thread))
        self.reply(message="Thread deleted")


routes = [(r"/threads", ThreadsHandler), (r"/threads/([^/]+)", ThreadHandler)]
