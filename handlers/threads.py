"""Threads: list, read with their emails, relabel, delete."""

from __future__ import annotations

from typing import Any

from gateway.mailbox import delete_email, label_ids_exist, public, public_email, refresh_thread, update_email
from gateway.store import Contains, Query
from handlers.base import APIError, APIHandler, Field
from handlers.emails import MAX_LABELS


class ThreadsHandler(APIHandler):
    """``GET /threads``: the caller's threads, newest activity first."""

    async def get(self) -> None:
        where: dict[str, Any] = {"owner": self.account["id"]}
        label = self.get_query_argument("label", None)
        if label:
            where["labels"] = Contains(label)
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
        body = self.body_fields({
            "labels": Field(list, items=str, max_length=MAX_LABELS),
            "read": Field(bool),
        }, partial=True)
        if "labels" in body:
            body["labels"] = list(dict.fromkeys(body["labels"]))
            unknown = await label_ids_exist(self.store, self.account["id"], body["labels"])
            if unknown:
                raise APIError(400, "unknown_label", f"Unknown label: {', '.join(unknown)}")
        for email in await self.emails_of(thread):
            await update_email(self.store, email, body)
        updated = await refresh_thread(self.store, self.account["id"], thread["id"])
        self.reply(thread=public(updated or thread))

    async def delete(self, thread_id: str) -> None:
        thread = await self.owned("threads", thread_id, "Thread")
        for email in await self.emails_of(thread):
            await delete_email(self.store, email)
        self.reply(message="Thread deleted")


routes = [(r"/threads", ThreadsHandler), (r"/threads/([^/]+)", ThreadHandler)]
