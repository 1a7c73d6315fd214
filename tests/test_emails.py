"""Emails and threads: compose, list with filters and paging, relabel, reply threading, delete."""

from __future__ import annotations

import pytest

from gateway import jsontext
from gateway.mail.documents import public_email
from gateway.store import Query
from tests.conftest import Api, settled


async def send(api: Api, token: str, **fields) -> dict:
    body = {"to": ["bob@localhost"], "subject": "hello", "text": "hi", **fields}
    reply = await api.post("/emails", body, token=token)
    assert reply.status == 201, reply.body
    return reply.json["email"]


@pytest.mark.gen_test
async def test_compose_queues_labels_and_threads(api: Api, gateway) -> None:
    account, token = await api.register("alice")
    email = await send(api, token, cc=["carol@example.com"], html="<p>hi</p>")
    assert email["status"] == "queued" and email["labels"] == ["sent"] and email["direction"] == "out"
    assert email["from"] == account["address"] and email["to"] == ["bob@localhost"]
    assert email["cc"] == ["carol@example.com"] and email["html"] == "<p>hi</p>"
    assert email["message_id"] == f"<{email['id']}@localhost>"
    thread = await api.get(f"/threads/{email['thread']}", token=token)
    assert thread.status == 200
    assert thread.json["thread"]["email_count"] == 1 and thread.json["thread"]["subject"] == "hello"
    assert [e["id"] for e in thread.json["emails"]] == [email["id"]]
    await settled(gateway)
    got = (await api.get(f"/emails/{email['id']}", token=token)).json["email"]
    assert {k: v for k, v in got.items() if k in email and k != "status"} == {k: v for k, v in email.items() if k != "status"}


@pytest.mark.gen_test
async def test_reply_joins_the_thread(api: Api) -> None:
    _, token = await api.register("alice")
    first = await send(api, token, subject="plan")
    reply = await send(api, token, subject="Re: plan", in_reply_to=first["id"])
    other = await send(api, token, subject="other")
    assert reply["thread"] == first["thread"] != other["thread"]
    assert reply["in_reply_to"] == first["message_id"] and reply["references"] == [first["message_id"]]
    threads = await api.get("/threads", token=token)
    assert threads.headers["X-Total-Count"] == "2"
    assert [t["email_count"] for t in threads.json["threads"]] == [1, 2]  # newest activity first
    listed = await api.get(f"/emails?thread={first['thread']}&sort=created", token=token)
    assert [e["id"] for e in listed.json["emails"]] == [first["id"], reply["id"]]
    bad = await api.post("/emails", {"to": ["b@x.org"], "text": "x", "in_reply_to": "f" * 24}, token=token)
    assert (bad.status, bad.json["code"]) == (400, "invalid_field")


@pytest.mark.gen_test
async def test_list_paging_sorting_and_label_filter(api: Api) -> None:
    _, token = await api.register("alice")
    sent = [await send(api, token, subject=f"s{i}") for i in range(5)]
    page = await api.get("/emails?limit=2&offset=1", token=token)
    assert page.headers["X-Total-Count"] == "5"
    assert [e["subject"] for e in page.json["emails"]] == ["s3", "s2"]
    by_subject = await api.get("/emails?sort=subject&limit=100", token=token)
    assert [e["subject"] for e in by_subject.json["emails"]] == ["s0", "s1", "s2", "s3", "s4"]
    beyond = await api.get("/emails?offset=10", token=token)
    assert beyond.json["emails"] == [] and beyond.headers["X-Total-Count"] == "5"
    assert (await api.get("/emails?label=inbox", token=token)).json["emails"] == []
    assert len((await api.get("/emails?label=sent", token=token)).json["emails"]) == 5

    await api.put(f"/emails/{sent[0]['id']}", {"labels": ["sent", "trash"]}, token=token)
    trash = await api.get("/emails?label=trash", token=token)
    assert [e["id"] for e in trash.json["emails"]] == [sent[0]["id"]]
    assert (await api.get("/threads?label=trash", token=token)).headers["X-Total-Count"] == "1"


@pytest.mark.gen_test
async def test_a_list_page_is_its_emails_encoded(api: Api, gateway) -> None:
    """A page of ``GET /emails`` is joined from the views the store keeps of each email (written with it,
    made again when it changes): byte for byte the encoding of the emails as ``find`` reads them."""
    account, token = await api.register("alice")
    sent = [await send(api, token, subject=f"caf\u00e9 {n} \U0001f600", html="<p>\u2603</p>") for n in range(3)]
    await settled(gateway)
    await api.put(f"/emails/{sent[1]['id']}", {"labels": ["sent", "trash"], "read": False}, token=token)
    store = gateway.store
    for path, query in [("/emails?limit=2", Query({"owner": account["id"]}, [("created", True)], limit=2)),
                        ("/emails?sort=subject&offset=1", Query({"owner": account["id"]}, [("subject", False)], offset=1))]:
        assert await store.find_listed("emails", query) is not None  # joined, not found and encoded
        page = await api.get(path, token=token)
        emails = [public_email(email) for email in await store.find("emails", query)]
        assert page.body == jsontext.dumps({"success": True, "emails": emails}), path
    assert [e["read"] for e in (await api.get("/emails?sort=created", token=token)).json["emails"]] == [True, False, True]


@pytest.mark.gen_test
@pytest.mark.parametrize("query", [
    "limit=0", "limit=101", "limit=abc", "offset=-1", "offset=x", "sort=nope", "sort=-password_hash",
])
async def test_bad_paging_values(api: Api, query: str) -> None:
    _, token = await api.register("alice")
    for path in ("/emails", "/threads", "/contacts"):
        reply = await api.get(f"{path}?{query}", token=token)
        assert (reply.status, reply.json["code"]) == (400, "invalid_parameter"), (path, query)


@pytest.mark.gen_test
async def test_update_labels_and_read_flag(api: Api, gateway) -> None:
    _, token = await api.register("alice")
    email = await send(api, token)
    await settled(gateway)
    label = (await api.post("/labels", {"name": "Work"}, token=token)).json["label"]
    reply = await api.put(f"/emails/{email['id']}", {"labels": ["sent", label["id"], "sent"], "read": False}, token=token)
    assert reply.status == 200
    assert reply.json["email"]["labels"] == ["sent", label["id"]] and reply.json["email"]["read"] is False
    thread = (await api.get(f"/threads/{email['thread']}", token=token)).json["thread"]
    assert thread["labels"] == ["sent", label["id"]] and thread["unread_count"] == 1

    for body, code in [({"labels": ["nope"]}, "unknown_label"), ({"labels": "sent"}, "invalid_field"),
                       ({"read": "yes"}, "invalid_field"), ({"subject": "x"}, "unknown_field"), ({}, "missing_field")]:
        bad = await api.put(f"/emails/{email['id']}", body, token=token)
        assert (bad.status, bad.json["code"]) == (400, code), body
    assert (await api.get(f"/emails/{email['id']}", token=token)).json["email"] == reply.json["email"]


@pytest.mark.gen_test
async def test_delete_email_and_thread(api: Api) -> None:
    _, token = await api.register("alice")
    first = await send(api, token)
    second = await send(api, token, in_reply_to=first["id"])
    assert (await api.delete(f"/emails/{first['id']}", token=token)).status == 200
    assert (await api.get(f"/emails/{first['id']}", token=token)).status == 404
    assert (await api.get(f"/threads/{first['thread']}", token=token)).json["thread"]["email_count"] == 1
    assert (await api.delete(f"/threads/{first['thread']}", token=token)).status == 200
    assert (await api.get(f"/emails/{second['id']}", token=token)).status == 404
    assert (await api.get(f"/threads/{first['thread']}", token=token)).status == 404
    assert (await api.delete(f"/threads/{first['thread']}", token=token)).status == 404


@pytest.mark.gen_test
async def test_thread_update_applies_to_every_email(api: Api) -> None:
    _, token = await api.register("alice")
    first = await send(api, token)
    await send(api, token, in_reply_to=first["id"])
    reply = await api.put(f"/threads/{first['thread']}", {"labels": ["trash"], "read": False}, token=token)
    assert reply.status == 200
    assert reply.json["thread"]["labels"] == ["trash"] and reply.json["thread"]["unread_count"] == 2
    emails = (await api.get(f"/emails?thread={first['thread']}", token=token)).json["emails"]
    assert [e["labels"] for e in emails] == [["trash"], ["trash"]]
    bad = await api.put(f"/threads/{first['thread']}", {"labels": ["nope"]}, token=token)
    assert (bad.status, bad.json["code"]) == (400, "unknown_label")


@pytest.mark.gen_test
@pytest.mark.parametrize("body,code", [
    ({"subject": "x", "text": "x"}, "missing_field"),
    ({"to": [], "text": "x"}, "invalid_field"),
    ({"to": "bob@localhost", "text": "x"}, "invalid_field"),
    ({"to": ["not an address"], "text": "x"}, "invalid_field"),
    ({"to": [1], "text": "x"}, "invalid_field"),
    ({"to": ["b@x.org"]}, "missing_field"),
    ({"to": ["b@x.org"], "text": 5}, "invalid_field"),
    ({"to": ["b@x.org"], "text": "x", "priority": "high"}, "unknown_field"),
    ({"to": ["b@x.org"] * 101, "text": "x"}, "invalid_field"),
    ({"to": ["b@x.org"], "text": "x", "in_reply_to": "../../etc"}, "invalid_field"),
    ({"to": ["b@x.org\n"], "text": "x"}, "invalid_field"),
    ({"to": ["b@x.org"], "text": "x", "subject": "a\r\nBcc: evil@x.org"}, "invalid_field"),
])
async def test_bad_compose_bodies(api: Api, body: dict, code: str) -> None:
    _, token = await api.register("alice")
    reply = await api.post("/emails", body, token=token)
    assert reply.json["code"] == code and reply.json["success"] is False
    assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "0"
