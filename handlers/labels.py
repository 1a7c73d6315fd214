"""Labels: the built-in Inbox, Sent, Trash and Spam, plus the account's own (:class:`gateway.mail.labels.Labels`)."""

from __future__ import annotations

from gateway.mail.labels import Labels
from handlers.base import APIHandler, Field


def name_field() -> Field:
    return Field(str, required=True, max_length=64, check=lambda v: None if v.strip() else "must not be empty")


class LabelBase(APIHandler):
    @property
    def labels(self) -> Labels:
        return Labels(self.store, self.account["id"])


class LabelsHandler(LabelBase):
    """``/labels``: list every label with counts; create one."""

    async def get(self) -> None:
        labels = await self.labels.all()
        self.set_header("X-Total-Count", str(len(labels)))
        self.reply(labels=labels)

    async def post(self) -> None:
        body = self.body_fields({"name": name_field()})
        self.reply(201, label=await self.labels.create(body["name"]))


class LabelHandler(LabelBase):
    """``/labels/{id}``: read, rename, delete (built-ins can be neither renamed nor deleted)."""

    async def get(self, label_id: str) -> None:
        labels = self.labels
        self.reply(label=await labels.with_counts(await labels.get(label_id)))

    async def put(self, label_id: str) -> None:
        labels = self.labels
        await labels.editable(label_id, "renamed")  # refused before the body is looked at
        body = self.body_fields({"name": name_field()})
        self.reply(label=await labels.rename(label_id, body["name"]))

    async def delete(self, label_id: str) -> None:
        await self.labels.delete(label_id)
        self.reply(message="Label deleted")


routes = [(r"/labels", LabelsHandler), (r"/labels/([^/]+)", LabelHandler)]
