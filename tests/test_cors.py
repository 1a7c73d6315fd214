"""Browsers on other origins: CORS on the API (any origin by default, a list to restrict), the same list
for /ws, JSON-only bodies (415 for what a page can send without a preflight), and the security headers
every API response carries."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from gateway.app.server import Gateway
from tests.conftest import PASSWORD, Api, api_for

APP = "https://mail.example.com"


@pytest.mark.gen_test
async def test_any_origin_by_default(api: Api, gateway: Gateway) -> None:
    pre = await api.call("OPTIONS", "/tokens", headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "content-type"},
                         check_spec=False)
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    for header in ("Authorization", "Content-Type", "Idempotency-Key"):
        assert header in pre.headers["Access-Control-Allow-Headers"]
    _, token = await api.register("alice")
    listed = await api.get("/emails", token=token, headers={"Origin": APP})
    assert listed.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Total-Count" in listed.headers["Access-Control-Expose-Headers"]
    info = await api.call("GET", "/ws/info", headers={"Origin": APP}, check_spec=False)
    assert json.loads(info.body)["origins"] == ["*:*"]


@pytest.mark.gen_test
async def test_a_list_of_origins_restricts_the_api_and_the_ws(start_gateway: Any) -> None:
    gateway = await start_gateway(cors_origins=f"{APP}, http://localhost:3000")
    api = api_for(gateway)
    ok = await api.call("OPTIONS", "/emails", headers={"Origin": APP, "Access-Control-Request-Method": "GET"},
                        check_spec=False)
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == APP and ok.headers["Vary"] == "Origin"
    evil = "https://evil.example"
    refused = await api.call("OPTIONS", "/emails", headers={"Origin": evil, "Access-Control-Request-Method": "GET"},
                             check_spec=False)
    assert (refused.status, refused.json["code"]) == (403, "origin_not_allowed")
    plain = await api.get("/", headers={"Origin": evil})
    assert plain.status == 200 and "Access-Control-Allow-Origin" not in plain.headers  # the page cannot read it
    info = await api.call("GET", "/ws/info", headers={"Origin": APP}, check_spec=False)
    assert json.loads(info.body)["origins"] == ["http://localhost:3000", APP]
    assert info.headers["Access-Control-Allow-Origin"] == APP
    assert (await api.call("GET", "/ws/info", headers={"Origin": evil}, check_spec=False)).status == 403
    session = "/ws/000/abcdef0123/xhr"
    assert (await api.call("POST", session, raw=b"", headers={"Origin": evil}, check_spec=False)).status == 403
    assert (await api.call("POST", session, raw=b"", headers={"Origin": APP}, check_spec=False)).body == b"o\n"


@pytest.mark.gen_test
async def test_only_json_bodies_are_taken(api: Api) -> None:
    body = json.dumps({"username": "alice", "password": PASSWORD})
    form = f'--x\r\nContent-Disposition: form-data; name="d"\r\n\r\n{body}\r\n--x--\r\n'
    for media, sent in (("text/plain", body), ("application/x-www-form-urlencoded", body),
                        ("multipart/form-data; boundary=x", form)):
        reply = await api.post("/accounts", raw=sent, headers={"Content-Type": media}, check_spec=False)
        assert (reply.status, reply.json["code"]) == (415, "unsupported_media_type"), media
    assert (await api.post("/accounts", raw=body, headers={"Content-Type": "application/json; charset=utf-8"})
            ).status == 201


@pytest.mark.gen_test
async def test_every_api_response_says_nosniff_and_a_strict_csp(api: Api) -> None:
    for reply in (await api.get("/"), await api.get("/nowhere"), await api.post("/accounts", {})):
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


@pytest.mark.gen_test
async def test_api_responses_start_with_tornados_headers_then_the_apis_in_order(api: Api) -> None:
    """``APIHandler.clear()`` makes them at once: Tornado's three, then the API's, as Tornado's ``clear()``
    and ``set_default_headers()`` gave them; an error (which clears the headers) keeps the request id."""
    for reply in (await api.get("/", headers={"X-Request-Id": "abc.1"}),
                  await api.get("/nowhere", headers={"X-Request-Id": "abc.1"})):
        names = [name for name in reply.headers if name not in ("Content-Length", "Connection")]
        assert names == ["Server", "Content-Type", "Date", "X-Request-Id", "Cache-Control", "X-Content-Type-Options",
                         "Content-Security-Policy"], reply.status
        assert reply.headers["Server"].startswith("TornadoServer/")
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        assert reply.headers["Date"].endswith(" GMT") and parsedate_to_datetime(reply.headers["Date"]).tzinfo
        assert reply.headers["X-Request-Id"] == "abc.1"
