"""Tokens: login, listing, revocation, expiry, and refusal of anything forged."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.app.server import Gateway
from tests.conftest import Api, PASSWORD, api_for, wait_until


def secret_of(gateway: Gateway) -> bytes:
    return gateway.state.tokens.secret


async def assert_refused(api: Api, token: str, code: str = "invalid_token") -> None:
    reply = await api.get("/accounts/me", token=token)
    assert (reply.status, reply.json["code"], reply.json["success"]) == (401, code, False)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.gen_test
async def test_login_returns_a_signed_jwt_with_id_and_expiry(api: Api, gateway: Gateway) -> None:
    account, _ = await api.register("alice")
    reply = await api.post("/tokens", {"username": "alice", "password": PASSWORD, "expires_in": 600})
    assert reply.status == 201
    token = reply.json["token"]
    claims = jwt.decode(token["value"], secret_of(gateway), algorithms=["HS256"])
    assert claims["sub"] == account["id"] and claims["jti"] == token["id"]
    assert claims["exp"] - claims["iat"] == 600
    assert set(token) == {"id", "value", "created", "expires", "ip", "user_agent"} and token["ip"] == "127.0.0.1"


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [
    {"username": "alice", "password": "wrong password"},
    {"username": "nobody", "password": PASSWORD},
])
async def test_wrong_credentials_are_refused_alike(api: Api, body: dict) -> None:
    await api.register("alice")
    reply = await api.post("/tokens", body)
    assert reply.status == 401
    assert reply.json == {"success": False, "message": "Wrong username or password", "code": "invalid_credentials"}


@pytest.mark.gen_test
async def test_list_and_revoke_tokens(api: Api) -> None:
    _, first = await api.register("alice")
    second = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]
    listed = await api.get("/tokens", token=first)
    assert listed.status == 200 and listed.headers["X-Total-Count"] == "2"
    current = {t["id"]: t["current"] for t in listed.json["tokens"]}
    assert current[second["id"]] is False and list(current.values()).count(True) == 1

    assert (await api.delete(f"/tokens/{second['id']}", token=first)).status == 200
    await assert_refused(api, second["value"])
    assert (await api.delete(f"/tokens/{second['id']}", token=first)).status == 404

    assert (await api.delete("/tokens", token=first)).status == 200
    await assert_refused(api, first)


@pytest.mark.gen_test
async def test_cannot_revoke_another_accounts_token(api: Api) -> None:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    bob_id = (await api.get("/tokens", token=bob)).json["tokens"][0]["id"]
    assert (await api.delete(f"/tokens/{bob_id}", token=alice)).status == 404
    assert (await api.get("/accounts/me", token=bob)).status == 200


@pytest.mark.gen_test
async def test_expired_token_is_refused(api: Api, gateway: Gateway) -> None:
    account, token = await api.register("alice")
    claims = jwt.decode(token, secret_of(gateway), algorithms=["HS256"])
    past = int(time.time()) - 10
    expired = jwt.encode({**claims, "iat": past - 60, "exp": past}, secret_of(gateway), algorithm="HS256")
    await assert_refused(api, expired)
    reply = await api.get("/accounts/me", token=expired)
    assert reply.json["message"] == "Token expired"
    # expired records are not listed either
    await gateway.store.update("tokens", claims["jti"], {"exp": past})
    fresh = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]["value"]
    assert [t["current"] for t in (await api.get("/tokens", token=fresh)).json["tokens"]] == [True]


def unsigned(claims: dict) -> str:
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}."


@pytest.mark.gen_test
async def test_forged_and_malformed_tokens_are_refused(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("alice")
    claims = jwt.decode(token, secret_of(gateway), algorithms=["HS256"])
    await assert_refused(api, unsigned(claims))
    await assert_refused(api, jwt.encode(claims, b"x" * 32, algorithm="HS256"))
    for missing in ("sub", "jti", "iat", "exp"):
        partial = {k: v for k, v in claims.items() if k != missing}
        await assert_refused(api, jwt.encode(partial, secret_of(gateway), algorithm="HS256"))
    # well signed, but no stored record for that jti
    await assert_refused(api, jwt.encode({**claims, "jti": "0" * 24}, secret_of(gateway), algorithm="HS256"))
    await assert_refused(api, "not-a-jwt")
    await assert_refused(api, token[:-3] + "AAA")
    # claims of the wrong type, well signed: refused on first use and every use after
    for bad in ({"exp": str(claims["exp"])}, {"iat": str(claims["iat"])}, {"exp": True}, {"sub": 7}, {"jti": None}):
        odd = jwt.encode({**claims, **bad}, secret_of(gateway), algorithm="HS256")
        await assert_refused(api, odd)
        await assert_refused(api, odd)


@pytest.mark.gen_test
@pytest.mark.parametrize("header,code", [
    (None, "unauthorized"), ("Bearer", "unauthorized"), ("Basic abc", "unauthorized"), ("Bearer  ", "unauthorized"),
])
async def test_missing_or_malformed_authorization(api: Api, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    reply = await api.get("/emails", headers=headers)
    assert (reply.status, reply.json["code"]) == (401, code)


@pytest.mark.gen_test
async def test_tokens_survive_a_restart(api: Api, gateway: Gateway, config) -> None:
    _, token = await api.register("alice")
    await gateway.stop()
    restarted = Gateway(config)
    await restarted.start()
    try:
        reply = await api_for(restarted).get("/accounts/me", token=token)
        assert reply.status == 200 and reply.json["account"]["username"] == "alice"
    finally:
        await restarted.stop()
    await gateway.start()  # the fixture stops it again


@pytest.mark.gen_test(timeout=15)
async def test_a_token_used_before_is_still_refused_once_expired_or_revoked(api: Api) -> None:
    await api.register("alice")
    # a token expires at its whole second of issue plus its lifetime: with 1 s it could expire before
    # its first use (issued at x.98, used at x+1.01, as a loaded machine did); with 2 s it lives at least 1 s
    short = (await api.post("/tokens", {"username": "alice", "password": PASSWORD, "expires_in": 2})).json["token"]
    assert (await api.get("/accounts/me", token=short["value"])).status == 200  # checked once: remembered
    expires = jwt.decode(short["value"], options={"verify_signature": False})["exp"]

    async def past_expiry() -> bool:
        return time.time() >= expires
    await wait_until(past_expiry, timeout=5)  # the clock, not a race: the token's own expiry
    reply = await api.get("/accounts/me", token=short["value"])
    assert (reply.status, reply.json["message"]) == (401, "Token expired")

    kept = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]
    assert (await api.get("/accounts/me", token=kept["value"])).status == 200
    assert (await api.delete("/tokens", token=kept["value"])).status == 200
    await assert_refused(api, kept["value"])


@pytest.mark.gen_test
async def test_read_one_token(api: Api) -> None:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    listed = (await api.get("/tokens", token=alice)).json["tokens"][0]
    reply = await api.get(f"/tokens/{listed['id']}", token=alice)
    assert reply.status == 200 and reply.json["token"] == listed and reply.json["token"]["current"] is True
    assert (await api.get(f"/tokens/{listed['id']}", token=bob)).status == 404  # another account's
    assert (await api.get("/tokens/nonsense", token=alice)).status == 404


@pytest.mark.gen_test
async def test_renew_a_token_without_the_password(api: Api, gateway: Gateway) -> None:
    account, old = await api.register("alice")
    renewed = await api.post("/tokens/renew", token=old)
    assert renewed.status == 201, renewed.body
    new = renewed.json["token"]["value"]
    assert new != old and (await api.get("/accounts/me", token=new)).json["account"]["id"] == account["id"]
    assert (await api.get("/accounts/me", token=old)).status == 200  # valid until its own expiry
    short = await api.post("/tokens/renew", {"expires_in": 60}, token=new)
    claims = jwt.decode(short.json["token"]["value"], secret_of(gateway), algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60
    assert (await api.post("/tokens/renew", {"expires_in": 10**9}, token=new)).status == 400
    assert (await api.delete("/tokens", token=old)).status == 200
    refused = await api.post("/tokens/renew", token=old)  # a revoked token renews nothing
    assert (refused.status, refused.json["code"]) == (401, "invalid_token")
    assert (await api.post("/tokens/renew")).status == 401
    assert (await api.get("/tokens/renew", token=new)).status == 405
