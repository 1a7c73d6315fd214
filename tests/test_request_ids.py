"""Request ids (X-Request-Id) on both paths, and JSON log lines that carry them (--log-format json)."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from typing import Any

import pytest

from tests.conftest import Api, PASSWORD
from tests.peers import SERVE, listening_at, serve_env
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
    process = subprocess.Popen(SERVE, cwd=tmp_path, env=serve_env(GATEWAY_LOG_FORMAT="json"), stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    reader: threading.Thread | None = None
    try:
        assert process.stderr is not None
        base = None
        for line in process.stderr:
            lines.append(line)
            base = listening_at(json.loads(line)["message"])
            if base:
                break
        assert base
        reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
        reader.start()

        def call(path: str, body: Any = None, token: str | None = None) -> Any:
            request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                             headers={"Content-Type": "application/json", "X-Request-Id": "req-42",
                                                      **({"Authorization": f"Bearer {token}"} if token else {})})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)

        call("/accounts", {"username": "alice", "password": PASSWORD})
        token = call("/tokens", {"username": "alice", "password": PASSWORD})["token"]["value"]
        me = call("/accounts/me", token=token)["account"]
    finally:
        process.terminate()
        process.wait(30)
        if reader is not None:
            reader.join(10)  # every line the server wrote is read
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r.get("route") == "MeHandler"]
    assert len(access) == 1
    entry = access[0]
    assert (entry["status"], entry["request_id"], entry["account_id"], entry["path"]) == (
        200, "req-42", me["id"], "/accounts/me")
    assert token not in "".join(lines)
