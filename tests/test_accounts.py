"""Accounts: register, read, update, delete (with everything the account owns)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PASSWORD, Api


@pytest.mark.gen_test
async def test_root_names_the_service(api: Api) -> None:
    reply = await api.get("/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.json["name"] == "gateway" and reply.json["success"] is True
    assert {k: reply.json["docs"][k] for k in ("api", "console", "openapi")} == {
        "api": "/docs", "console": "/console", "openapi": "/openapi.json"}


@pytest.mark.gen_test
async def test_register_and_read_me(api: Api) -> None:
    reply = await api.post("/accounts", {"username": "Alice", "password": PASSWORD, "display_name": "Alice A."})
    assert reply.status == 201
    account = reply.json["account"]
    assert account["username"] == "alice"
    assert account["address"] == "alice@localhost"
    assert account["display_name"] == "Alice A."
    assert "password_hash" not in account and "password" not in account
    login = await api.post("/tokens", {"username": "alice", "password": PASSWORD})
    me = await api.get("/accounts/me", token=login.json["token"]["value"])
    assert me.status == 200 and me.json["account"] == account


@pytest.mark.gen_test
async def test_password_is_stored_as_argon2id(api: Api, gateway) -> None:
    account, _ = await api.register("alice")
    stored = await gateway.store.get("accounts", account["id"])
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)


@pytest.mark.gen_test
async def test_duplicate_username_conflicts(api: Api) -> None:
    await api.register("alice")
    reply = await api.post("/accounts", {"username": "ALICE", "password": "another secret pw"})
    assert reply.status == 409 and reply.json == {
        "success": False, "message": "Username 'alice' is taken", "code": "username_taken"}


@pytest.mark.gen_test
@pytest.mark.parametrize("username,password,status,code", [
    ("al", PASSWORD, 400, "invalid_field"),
    ("-alice", PASSWORD, 400, "invalid_field"),
    ("al ice", PASSWORD, 400, "invalid_field"),
    ("alice", "", 400, "weak_password"),
    ("alice", "short", 400, "weak_password"),
    ("alice", "aaaaaaaaaaaa", 400, "weak_password"),
    ("alice", "password1", 400, "weak_password"),
    ("alice", "alice-is-great", 400, "weak_password"),
])
async def test_bad_registrations_are_refused(api: Api, username: str, password: str, status: int, code: str) -> None:
    reply = await api.post("/accounts", {"username": username, "password": password})
    assert (reply.status, reply.json["code"], reply.json["success"]) == (status, code, False)
    assert (await api.post("/tokens", {"username": "alice", "password": password})).status == 401


@pytest.mark.gen_test
async def test_update_display_name_and_password(api: Api) -> None:
    _, token = await api.register("alice")
    reply = await api.put("/accounts/me", {"display_name": "Queen Alice"}, token=token)
    assert reply.status == 200 and reply.json["account"]["display_name"] == "Queen Alice"

    reply = await api.put("/accounts/me", {"password": "a new long secret"}, token=token)
    assert (reply.status, reply.json["code"]) == (400, "missing_field")
    reply = await api.put("/accounts/me", {"password": "a new long secret", "current_password": "wrong one!"}, token=token)
    assert (reply.status, reply.json["code"]) == (403, "wrong_password")
    reply = await api.put("/accounts/me", {"password": "short", "current_password": PASSWORD}, token=token)
    assert (reply.status, reply.json["code"]) == (400, "weak_password")
    other = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]["value"]
    reply = await api.put("/accounts/me", {"password": "a new long secret", "current_password": PASSWORD}, token=token)
    assert reply.status == 200
    assert (await api.get("/accounts/me", token=other)).status == 401  # every other token is revoked
    assert (await api.get("/accounts/me", token=token)).status == 200

    assert (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).status == 401
    assert (await api.post("/tokens", {"username": "alice", "password": "a new long secret"})).status == 201
    assert (await api.put("/accounts/me", {}, token=token)).json["code"] == "missing_field"
    assert (await api.put("/accounts/me", {"username": "bob"}, token=token)).json["code"] == "unknown_field"


@pytest.mark.gen_test
async def test_delete_account_removes_everything_it_owns(api: Api, gateway) -> None:
    alice, token = await api.register("alice")
    _, bob_token = await api.register("bob")
    await api.post("/emails", {"to": ["bob@localhost"], "subject": "hi", "text": "x"}, token=token)
    await api.post("/labels", {"name": "Work"}, token=token)
    await api.post("/contacts", {"name": "Bob", "email": "bob@localhost"}, token=token)
    await api.post("/emails", {"to": ["alice@localhost"], "subject": "from bob", "text": "y"}, token=bob_token)

    reply = await api.delete("/accounts/me", token=token)
    assert reply.status == 200 and reply.json["success"] is True

    assert (await api.get("/accounts/me", token=token)).status == 401
    for table in ("tokens", "emails", "threads", "labels", "contacts"):
        assert await gateway.store.count(table, {"owner": alice["id"]}) == 0, table
    assert await gateway.store.get("accounts", alice["id"]) is None
    # the name is free again, and bob's own mail is untouched
    assert (await api.post("/accounts", {"username": "alice", "password": PASSWORD})).status == 201
    assert (await api.get("/emails", token=bob_token)).json["emails"][0]["subject"] == "from bob"


@pytest.mark.gen_test
async def test_bodies_are_compact_json_with_raw_utf8(api: Api) -> None:
    """API bodies are compact JSON with non-ASCII characters as UTF-8 (docs/api.md), and a value
    that is not valid Unicode (a lone surrogate) still comes back, as a ``\\u`` escape."""
    name = "Zo\u00eb \u2603 \U0001f600"
    _, token = await api.register("alice")
    reply = await api.put("/accounts/me", {"display_name": name}, token=token)
    assert reply.status == 200
    me = await api.get("/accounts/me", token=token)
    assert me.json["account"]["display_name"] == name
    assert name.encode("utf-8") in me.body and b"\\u" not in me.body
    assert me.body == json.dumps(me.json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    odd = await api.call("PUT", "/accounts/me", raw='{"display_name": "a\\ud800b"}', token=token)
    assert odd.status == 200, odd.body  # taken as given: it must come back as valid UTF-8, escaped
    assert b'"a\\ud800b"' in odd.body and odd.json["account"]["display_name"] == "a\ud800b"
