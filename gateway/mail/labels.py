"""Labels: the built-in Inbox, Sent, Trash and Spam, plus an account's own, with their email counts."""

from __future__ import annotations

from gateway.errors import Forbidden, NotFound, Taken
from gateway.ids import is_id, new_id
from gateway.mail.documents import BUILTIN_LABELS, builtin_label, new_label, public_label
from gateway.mail.mailbox import remove_label_everywhere
from gateway.store import Contains, Doc, Documents, Query


class Labels:
    """One account's labels (``owner`` is its id)."""

    def __init__(self, store: Documents, owner: str) -> None:
        self.store = store
        self.owner = owner

    async def with_counts(self, label: Doc) -> Doc:
        where = {"owner": self.owner, "labels": Contains(label["id"])}
        total = await self.store.count("emails", where)
        unread = await self.store.count("emails", {**where, "read": False})
        return {**label, "emails_total": total, "emails_unread": unread}

    async def all(self) -> list[Doc]:
        """The built-in labels, then the account's own by name, each with counts."""
        own = await self.store.find("labels", Query({"owner": self.owner}, [("name", False)]))
        labels = [builtin_label(i) for i in BUILTIN_LABELS] + [public_label(label) for label in own]
        return [await self.with_counts(label) for label in labels]

    async def get(self, label_id: str) -> Doc:
        """A label as clients see it (no counts); :class:`NotFound` for another account's or none."""
        if label_id in BUILTIN_LABELS:
            return builtin_label(label_id)
        label = await self.store.get("labels", label_id) if is_id(label_id) else None
        if label is None or label.get("owner") != self.owner:
            raise NotFound("not_found", "Label not found")
        return public_label(label)

    async def _check_name(self, name: str, except_id: str | None = None) -> None:
        folded = name.casefold()
        own = await self.store.find("labels", Query({"owner": self.owner}))
        if any(folded == builtin.casefold() for builtin in BUILTIN_LABELS.values()) \
                or any(label["name"].casefold() == folded and label["id"] != except_id for label in own):
            raise Taken("label_exists", f"A label named '{name}' exists")

    async def create(self, name: str) -> Doc:
        name = name.strip()
        await self._check_name(name)
        label = new_label(new_id(), self.owner, name)
        await self.store.insert("labels", label)
        return await self.with_counts(public_label(label))

    async def editable(self, label_id: str, verb: str) -> Doc:
        """The label, if it is one of the account's own; :class:`Forbidden` for a built-in one."""
        label = await self.get(label_id)
        if label["builtin"]:
            raise Forbidden("builtin_label", f"The built-in label '{label['name']}' cannot be {verb}")
        return label

    async def rename(self, label_id: str, name: str) -> Doc:
        await self.editable(label_id, "renamed")
        name = name.strip()
        await self._check_name(name, except_id=label_id)
        updated = await self.store.update("labels", label_id, {"name": name})
        if updated is None:
            raise NotFound("not_found", "Label not found")
        return await self.with_counts(public_label(updated))

    async def delete(self, label_id: str) -> None:
        """Delete the label and take it off every email (and so every thread)."""
        await self.editable(label_id, "deleted")
        await self.store.delete("labels", label_id)
        await remove_label_everywhere(self.store, self.owner, label_id)
