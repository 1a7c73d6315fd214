"""Labels (built-in and own) and contacts."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.mark.gen_test
async def test_labels_lifecycle(api: Api) -> None:
    _, token = await api.register("alice")
    listed = await api.get("/labels", token=token)
    assert [(l["id"], l["name"], l["builtin"]) for l in listed.json["labels"]] == [
        ("inbox", "Inbox", True), ("sent", "Sent", True), ("trash", "Trash", True), ("spam", "Spam", True)]
    created = await api.post("/labels", {"name": "Work"}, token=token)
    assert created.status == 201
    label = created.json["label"]
    assert label["name"] == "Work" and label["builtin"] is False and label["emails_total"] == 0

    email = (await api.post("/emails", {"to": ["b@x.org"], "text": "x"}, token=token)).json["email"]
    await api.put(f"/emails/{email['id']}", {"labels": ["sent", label["id"]], "read": False}, token=token)
    got = (await api.get(f"/labels/{label['id']}", token=token)).json["label"]
    assert (got["emails_total"], got["emails_unread"]) == (1, 1)
    assert (await api.get("/labels/sent", token=token)).json["label"]["emails_total"] == 1

    renamed = await api.put(f"/labels/{label['id']}", {"name": "Job"}, token=token)
    assert renamed.status == 200 and renamed.json["label"]["name"] == "Job"
    for name in ("job", "INBOX", "Inbox"):
        assert (await api.post("/labels", {"name": name}, token=token)).status == 409
    assert (await api.put(f"/labels/{label['id']}", {"name": "Trash"}, token=token)).status == 409
    assert (await api.post("/labels", {"name": "  "}, token=token)).json["code"] == "invalid_field"

    assert (await api.delete(f"/labels/{label['id']}", token=token)).status == 200
    assert (await api.get(f"/labels/{label['id']}", token=token)).status == 404
    assert (await api.get(f"/emails/{email['id']}", token=token)).json["email"]["labels"] == ["sent"]
    assert (await api.get(f"/threads/{email['thread']}", token=token)).json["thread"]["labels"] == ["sent"]


@pytest.mark.gen_test
@pytest.mark.parametrize("builtin", ["inbox", "sent", "trash", "spam"])
async def test_builtin_labels_cannot_be_renamed_or_deleted(api: Api, builtin: str) -> None:
    _, token = await api.register("alice")
    deleted = await api.delete(f"/labels/{builtin}", token=token)
    assert (deleted.status, deleted.json["code"]) == (403, "builtin_label")
    renamed = await api.put(f"/labels/{builtin}", {"name": "Mine"}, token=token)
    assert (renamed.status, renamed.json["code"]) == (403, "builtin_label")
    assert (await api.get(f"/labels/{builtin}", token=token)).status == 200


@pytest.mark.gen_test
async def test_contacts_lifecycle(api: Api) -> None:
    _, token = await api.register("alice")
    created = await api.post("/contacts", {"name": "Bob", "email": "Bob@Example.com", "notes": "met at PyCon"}, token=token)
    assert created.status == 201
    contact = created.json["contact"]
    assert contact["email"] == "bob@example.com" and contact["notes"] == "met at PyCon"
    await api.post("/contacts", {"name": "Ann", "email": "ann@example.com"}, token=token)
    listed = await api.get("/contacts", token=token)
    assert listed.headers["X-Total-Count"] == "2" and [c["name"] for c in listed.json["contacts"]] == ["Ann", "Bob"]
    assert (await api.get(f"/contacts/{contact['id']}", token=token)).json["contact"] == contact

    dup = await api.post("/contacts", {"name": "B2", "email": "bob@example.com"}, token=token)
    assert (dup.status, dup.json["code"]) == (409, "contact_exists")
    updated = await api.put(f"/contacts/{contact['id']}", {"name": "Robert"}, token=token)
    assert updated.json["contact"]["name"] == "Robert" and updated.json["contact"]["email"] == "bob@example.com"
    clash = await api.put(f"/contacts/{contact['id']}", {"email": "ann@example.com"}, token=token)
    assert clash.status == 409
    for body, code in [({"email": "nope"}, "invalid_field"), ({"name": ""}, "invalid_field"),
                       ({"phone": "1"}, "unknown_field"), ({}, "missing_field")]:
        bad = await api.put(f"/contacts/{contact['id']}", body, token=token)
        assert (bad.status, bad.json["code"]) == (400, code), body
    missing = await api.post("/contacts", {"name": "Carl"}, token=token)
    assert (missing.status, missing.json["code"]) == (400, "missing_field")

    assert (await api.delete(f"/contacts/{contact['id']}", token=token)).status == 200
    assert (await api.get(f"/contacts/{contact['id']}", token=token)).status == 404
