"""Labels: the built-in Inbox, Sent, Trash and Spam, plus the account's own."""

from __future__ import annotations

from gateway.ids import new_id, now_iso
from gateway.mailbox import BUILTIN_LABELS, builtin_label, public, remove_label_everywhere
from gateway.store import Contains, Doc, Query
from handlers.base import APIError, APIHandler, Field, not_found


def name_field(required: bool = False) -> Field:
    return Field(str, required=required, max_length=64,
                 check=lambda v: None if v.strip() else "must not be empty")


class LabelBase(APIHandler):
    async def with_counts(self, label: Doc) -> Doc:
        where = {"owner": self.account["id"], "labels": Contains(label["id"])}
        total = await self.store.count("emails", where)
        unread = await self.store.count("emails", {**where, "read": False})
        return {**label, "emails_total": total, "emails_unread": unread}

    async def name_taken(self, name: str, except_id: str | None = None) -> bool:
        folded = name.strip().casefold()
        if any(folded == builtin.casefold() for builtin in BUILTIN_LABELS.values()):
            return True
        own = await self.store.find("labels", Query({"owner": self.account["id"]}))
        return any(l["name"].casefold() == folded and l["id"] != except_id for l in own)

    async def label(self, label_id: str) -> Doc:
        if label_id in BUILTIN_LABELS:
            return builtin_label(label_id)
        return {**public(await self.owned("labels", label_id, "Label")), "builtin": False}


class LabelsHandler(LabelBase):
    """``/labels``: list every label with counts; create one."""

    async def get(self) -> None:
        own = await self.store.find("labels", Query({"owner": self.account["id"]}, [("name", False)]))
        labels = [builtin_label(i) for i in BUILTIN_LABELS] + [{**public(l), "builtin": False} for l in own]
        self.set_header("X-Total-Count", str(len(labels)))
        self.reply(labels=[await self.with_counts(l) for l in labels])

    async def post(self) -> None:
        body = self.body_fields({"name": name_field(required=True)})
        name = body["name"].strip()
        if await self.name_taken(name):
            raise APIError(409, "label_exists", f"A label named '{name}' exists")
        label = {"id": new_id(), "owner": self.account["id"], "name": name, "created": now_iso()}
        await self.store.insert("labels", label)
        self.reply(201, label=await self.with_counts({**public(label), "builtin": False}))


class LabelHandler(LabelBase):
    """``/labels/{id}``: read, rename, delete (built-ins can be neither renamed nor deleted)."""

    async def get(self, label_id: str) -> None:
        self.reply(label=await self.with_counts(await self.label(label_id)))

    async def put(self, label_id: str) -> None:
        label = await self.label(label_id)
        if label["builtin"]:
            raise APIError(403, "builtin_label", f"The built-in label '{label['name']}' cannot be renamed")
        body = self.body_fields({"name": name_field(required=True)})
        name = body["name"].strip()
        if await self.name_taken(name, except_id=label_id):
            raise APIError(409, "label_exists", f"A label named '{name}' exists")
        updated = await self.store.update("labels", label_id, {"name": name})
        if updated is None:
            raise not_found("Label")
        self.reply(label=await self.with_counts({**public(updated), "builtin": False}))

    async def delete(self, label_id: str) -> None:
        label = await self.label(label_id)
        if label["builtin"]:
            raise APIError(403, "builtin_label", f"The built-in label '{label['name']}' cannot be deleted")
        await self.store.delete("labels", label_id)
        await remove_label_everywhere(self.store, self.account["id"], label_id)
        self.reply(message="Label deleted")


routes = [(r"/labels", LabelsHandler), (r"/labels/([^/]+)", LabelHandler)]
