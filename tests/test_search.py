"""``?q=`` on emails and threads, on both backends: subject, from, to and the text body, ignoring case
(Unicode case folding), combined with the label and thread filters and paging; threading that keeps
working with attachments and for mail sent to oneself; display names in and out."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import api_for, settled
from tests.stores import store_option
from tests.peers import in_thread, smtp_send


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("backend", ["sqlite", "rethinkdb"])
async def test_search_emails_and_threads(start_gateway: Any, backend: str) -> None:
    gateway = await start_gateway(**store_option(backend))
    api = api_for(gateway)
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")

    async def send(token: str, **fields: Any) -> dict[str, Any]:
        reply = await api.post("/emails", {"to": ["carol@example.org"], "text": "", **fields}, token=token)
        assert reply.status == 201, reply.body
        return reply.json["email"]

    budget = await send(alice, subject="Budget 2026", text="numbers")
    reply = await send(alice, subject="Re: Budget 2026", text="Looks GOOD", in_reply_to=budget["id"])
    await send(alice, subject="Straße", text="Grüße an die STRASSE", to=["Dörte Müller <doerte@example.org>"])
    await send(alice, subject="lunch", text="100% (really) [ok] .* ^$ \\ ?")
    await send(bob, subject="budget too", text="bob's own")  # never in alice's results
    await in_thread(smtp_send, gateway.smtp_port, "Zed Budgeteer <zed@example.org>", ["alice@localhost"],
                    b"From: Zed Budgeteer <zed@example.org>\r\nTo: alice@localhost\r\nSubject: hello\r\n\r\nplain\r\n")

    async def subjects(query: str, path: str = "/emails", token: str = alice) -> list[str]:
        listed = await api.get(f"{path}?{query}&sort=subject", token=token)
        assert listed.status == 200, listed.body
        items = listed.json["emails" if path == "/emails" else "threads"]
        assert listed.headers["X-Total-Count"] == str(len(items)) or "limit=" in query
        return [item["subject"] for item in items]

    assert await subjects("q=budget") == ["Budget 2026", "Re: Budget 2026", "hello"]  # subject, and a From name
    assert await subjects("q=BUDGET&label=inbox") == ["hello"]
    assert await subjects(f"q=budget&thread={budget['thread']}") == ["Budget 2026", "Re: Budget 2026"]
    assert await subjects("q=looks%20good") == ["Re: Budget 2026"]  # the text body
    assert await subjects("q=strasse") == ["Straße"]  # case folding: ß is ss
    assert await subjects("q=D%C3%96RTE") == ["Straße"]  # a recipient's display name, any case
    assert await subjects("q=doerte%40example") == ["Straße"]  # and the address
    assert await subjects("q=zed%40example.org") == ["hello"]  # from
    assert await subjects("q=%25%20(really)%20%5Bok%5D%20.*%20%5E%24%20%5C") == ["lunch"]  # no pattern syntax
    assert await subjects("q=.*") == ["lunch"]
    assert await subjects("q=nothing-like-this") == []
    assert await subjects("q=") == ["Budget 2026", "Re: Budget 2026", "Straße", "hello", "lunch"]
    page = await api.get("/emails?q=budget&sort=subject&limit=1&offset=1", token=alice)
    assert page.headers["X-Total-Count"] == "3" and [e["subject"] for e in page.json["emails"]] == ["Re: Budget 2026"]
    assert await subjects("q=budget", token=bob) == ["budget too"]

    assert await subjects("q=budget", "/threads") == ["Budget 2026", "hello"]  # one thread for the two
    assert await subjects("q=looks", "/threads") == ["Budget 2026"]
    assert await subjects("q=budget&label=inbox", "/threads") == ["hello"]
    assert await subjects("q=nothing-like-this", "/threads") == []
    too_long = await api.get("/emails?q=" + "x" * 201, token=alice)
    assert (too_long.status, too_long.json["code"]) == (400, "invalid_parameter")
    assert reply["thread"] == budget["thread"]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("backend", ["sqlite", "rethinkdb"])
async def test_mail_to_oneself_and_replies_with_attachments_keep_one_thread(start_gateway: Any, backend: str) -> None:
    gateway = await start_gateway(**store_option(backend))
    api = api_for(gateway)
    _, alice = await api.register("alice")
    first = (await api.post("/emails", {"to": ["Me <alice@localhost>"], "subject": "note to self", "text": "x"},
                            token=alice)).json["email"]
    await settled(gateway)
    copies = (await api.get("/emails?sort=created", token=alice)).json["emails"]
    assert [c["labels"] for c in copies] == [["sent"], ["inbox"]]
    assert {c["thread"] for c in copies} == {first["thread"]}  # the Sent and the Inbox copy: one thread
    threads = (await api.get("/threads", token=alice)).json["threads"]
    assert [(t["email_count"], sorted(t["labels"])) for t in threads] == [(2, ["inbox", "sent"])]

    attachment = {"filename": "a.bin", "content_base64": base64.b64encode(b"\x00\x01").decode()}
    answer = await api.post("/emails", {"to": ["alice@localhost"], "subject": "Re: note to self", "text": "y",
                                        "in_reply_to": copies[1]["id"], "attachments": [attachment]}, token=alice)
    assert answer.json["email"]["thread"] == first["thread"]
    await settled(gateway)
    threads = (await api.get("/threads", token=alice)).json["threads"]
    assert [t["email_count"] for t in threads] == [4]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("entry", [
    "Alice <not an address>", "<>", "Alice <a@b.org> extra", "Al<ice <a@b.org>", "Alice\r\n <a@b.org>",
    '"unterminated <a@b.org>', "x" * 201 + " <a@b.org>", "=?utf-8?q?x?= <=?utf-8?q?a?=@b.org>", "",
])
async def test_bad_display_name_entries_are_refused(start_gateway: Any, entry: str) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    reply = await api.post("/emails", {"to": [entry], "text": "x"}, token=token, check_spec=False)
    assert (reply.status, reply.json["code"]) == (400, "invalid_field"), entry
    assert "has invalid addresses" in reply.json["message"]
