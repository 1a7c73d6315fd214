"""Request ids (X-Request-Id) on both paths, and JSON log lines that carry them (--log-format json)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import PASSWORD, Api
from tests.peers import Served
from tests.sockjs_clients import connect


@pytest.mark.gen_test
async def test_a_request_id_is_kept_or_made_and_carried_into_tunneled_requests(api: Api) -> None:
    assert (await api.get("/", headers={"X-Request-Id": "abc-123"})).headers["X-Request-Id"] == "abc-123"
    made = (await api.get("/", headers={"X-Request-Id": "bad id with spaces"})).headers["X-Request-Id"]
    assert made != "bad id with spaces" and len(made) == 16
    assert (await api.get("/nowhere", headers={"X-Request-Id": "e1"})).headers["X-Request-Id"] == "e1"  # errors too
    client = await connect("websocket", api.base_url)
    try:
        first = await client.request("GET", "/")
        assert first["headers"]["X-Request-Id"][0].endswith(".r1")  # <session prefix>.<message id>
        mine = await client.request("GET", "/", headers={"X-Request-Id": "mine"})
        assert mine["headers"]["X-Request-Id"] == ["mine"]
    finally:
        await client.close()


def test_json_log_lines_carry_route_status_account_and_request_id(tmp_path: Any) -> None:
    served = Served(tmp_path, {"GATEWAY_LOG_FORMAT": "json"}, message=lambda line: json.loads(line)["message"])
    try:
        tagged = {"X-Request-Id": "req-42"}
        served.call("POST", "/accounts", {"username": "alice", "password": PASSWORD}, headers=tagged)
        token = served.call("POST", "/tokens", {"username": "alice", "password": PASSWORD}, headers=tagged)
        token = token["token"]["value"]
        me = served.call("GET", "/accounts/me", token=token, headers=tagged)["account"]
    finally:
        served.stop()  # every line the server wrote is read
    lines = served.lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r.get("route") == "MeHandler"]
    assert len(access) == 1
    entry = access[0]
    assert (entry["status"], entry["request_id"], entry["account_id"], entry["path"]) == (
        200, "req-42", me["id"], "/accounts/me")
    assert token not in "".join(lines)
