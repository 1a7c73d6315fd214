"""Bad input of every kind gets the error envelope, the right status, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app.server import Gateway
from tests.conftest import PASSWORD, Api

ENVELOPE_KEYS = {"success", "message", "code"}


def assert_envelope(reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert set(reply.json) == ENVELOPE_KEYS and reply.json["success"] is False
    assert reply.json["code"] == code, reply.json
    assert "Traceback" not in reply.body.decode()


@pytest.mark.gen_test
@pytest.mark.parametrize("raw,code", [
    ("{", "invalid_json"), ("", "invalid_json"), ("[]", "invalid_json"), ('"text"', "invalid_json"),
    ("null", "invalid_json"), ("\xff\xfe", "invalid_json"), ('{"username": 5, "password": "x"}', "invalid_field"),
    ('{"username": "alice"}', "missing_field"), ('{"username": "alice", "password": "%s", "admin": true}' % PASSWORD, "unknown_field"),
    ('{"username": null, "password": "x"}', "invalid_field"),
])
async def test_malformed_registration_bodies(api: Api, gateway: Gateway, raw: str, code: str) -> None:
    reply = await api.post("/accounts", raw=raw.encode("latin-1"))
    assert_envelope(reply, 400, code)
    assert await gateway.store.count("accounts") == 0


@pytest.mark.gen_test
async def test_oversized_body_is_413(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("alice")
    big = {"name": "x" * (gateway.config.max_body + 1), "email": "b@x.org"}
    assert_envelope(await api.post("/contacts", big, token=token), 413, "too_large")
    assert await gateway.store.count("contacts") == 0
    # a send may be as large as a message SMTP takes (tests/test_attachments.py has its limits)
    config = gateway.config
    huge = {"to": ["b@x.org"], "text": "x" * (config.max_body + config.smtp_max_size + 1)}
    assert_envelope(await api.post("/emails", huge, token=token), 413, "too_large")
    assert await gateway.store.count("emails") == 0


@pytest.mark.gen_test
async def test_unknown_route_and_method(api: Api) -> None:
    assert_envelope(await api.get("/nowhere"), 404, "not_found")
    assert_envelope(await api.post("/nowhere", {}), 404, "not_found")
    assert_envelope(await api.call("PATCH", "/accounts", {}), 405, "method_not_allowed")
    _, token = await api.register("alice")
    assert_envelope(await api.call("POST", "/accounts/me", {}, token=token), 405, "method_not_allowed")


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/emails/xyz", "/emails/" + "0" * 24 + "%0A", "/emails/" + "0" * 24, "/threads/%2e%2e", "/labels/nope",
                                  "/contacts/" + "A" * 24, "/tokens/123"])
async def test_bad_or_unknown_ids_are_404(api: Api, path: str) -> None:
    _, token = await api.register("alice")
    method = "DELETE" if path.startswith("/tokens") else "GET"
    assert_envelope(await api.call(method, path, token=token), 404, "not_found")


@pytest.mark.gen_test
async def test_store_down_answers_503_without_traceback(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("alice")
    await gateway.store.close()
    try:
        assert_envelope(await api.get("/emails", token=token), 503, "store_unavailable")
        health = await api.get("/health")
        assert health.status == 503 and health.json["store"] == "down" and health.json["code"] == "store_unavailable"
    finally:
        await gateway.store.open()
    health = await api.get("/health")
    assert health.status == 200 and health.json == {"success": True, "status": "ok", "store": "up"}


@pytest.mark.gen_test
async def test_stopping_a_gateway_that_never_started_does_nothing(tmp_path: Any) -> None:
    from gateway.config import Config

    gateway = Gateway(Config(store=f"sqlite:{tmp_path}/never.db", smtp="off", port=0))
    await gateway.stop()
    await gateway.stop()
