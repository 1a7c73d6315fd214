"""Every account sees only its own data: another account's ids answer 404 and never show in lists."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.mark.gen_test
async def test_other_accounts_resources_are_invisible(api: Api) -> None:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    email = (await api.post("/emails", {"to": ["x@y.org"], "subject": "secret", "text": "s"}, token=alice)).json["email"]
    label = (await api.post("/labels", {"name": "Private"}, token=alice)).json["label"]
    contact = (await api.post("/contacts", {"name": "Spy", "email": "spy@y.org"}, token=alice)).json["contact"]
    owned = {
        f"/emails/{email['id']}": {"read": False},
        f"/threads/{email['thread']}": {"read": False},
        f"/labels/{label['id']}": {"name": "Mine"},
        f"/contacts/{contact['id']}": {"name": "Mine"},
    }
    for path, change in owned.items():
        for method, body in (("GET", None), ("PUT", change), ("DELETE", None)):
            reply = await api.call(method, path, body, token=bob)
            assert (reply.status, reply.json["code"]) == (404, "not_found"), (method, path)
        assert (await api.get(path, token=alice)).status == 200, path
    for path in ("/emails", "/threads", "/contacts"):
        assert (await api.get(path, token=bob)).headers["X-Total-Count"] == "0", path
    assert [l["builtin"] for l in (await api.get("/labels", token=bob)).json["labels"]] == [True] * 4
    # bob may not file his mail under alice's label, nor reply into her thread
    bobs = (await api.post("/emails", {"to": ["x@y.org"], "text": "b"}, token=bob)).json["email"]
    assert (await api.put(f"/emails/{bobs['id']}", {"labels": [label["id"]]}, token=bob)).json["code"] == "unknown_label"
    reply = await api.post("/emails", {"to": ["x@y.org"], "text": "b", "in_reply_to": email["id"]}, token=bob)
    assert (reply.status, reply.json["code"]) == (400, "invalid_field")
