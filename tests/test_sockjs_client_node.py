"""The real ``sockjs-client`` (npm, run by Node) against the running gateway, one forced transport at a time.

``tests/js/scenario.js`` does the work: it tunnels a registration, a login and a
few API calls, subscribes, unsubscribes, sends a message that is not JSON and
checks the session is still usable, printing one JSON line per step and a final
result line.  It runs as an asyncio subprocess so the server, on this test's
event loop, keeps serving while it runs.  Its dependencies come from
``npm ci --prefix tests/js`` (part of the test command in README.md); without
Node or them these tests skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, Api

JS_DIR = Path(__file__).parent / "js"
SCENARIO = JS_DIR / "scenario.js"
NODE = shutil.which("node")
TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]
STEPS = ["open", "register", "login", "send email", "list emails", "me",
         "subscribe", "unsubscribe", "bad message", "still usable", "close"]
#: The scenario's own limit; the test's is longer so the scenario reports which step hung.
SCENARIO_TIMEOUT = 20

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: these tests run the real sockjs-client in Node"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "sockjs-client" / "package.json").is_file(),
                       reason="tests/js/node_modules is missing: run `npm ci --prefix tests/js`"),
]


async def run_scenario(base_url: str, transport: str, username: str,
                       **env: str) -> tuple[int | None, list[dict[str, Any]], str]:
    """Run scenario.js to the end: its exit status, its JSON lines and its stderr."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(SCENARIO), base_url, transport, username,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SCENARIO_TIMEOUT_MS": str(SCENARIO_TIMEOUT * 1000), **env},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCENARIO_TIMEOUT + 5)
    except asyncio.TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(f"scenario.js outlived its own timeout\nstdout:\n{stdout.decode()}\n"
                             f"stderr:\n{stderr.decode()}") from None
    out, err = stdout.decode(), stderr.decode()
    try:
        lines = [json.loads(line) for line in out.splitlines()]
    except ValueError:
        raise AssertionError(f"scenario.js printed something that is not a JSON line\nstdout:\n{out}\n"
                             f"stderr:\n{err}") from None
    return process.returncode, lines, err


def check_succeeded(transport: str, code: int | None, lines: list[dict[str, Any]], err: str) -> dict[str, Any]:
    """The scenario passed every step on the forced transport; its result line."""
    assert lines and code == 0, f"scenario.js exited with {code}: {err.strip() or lines}"
    *steps, result = lines
    assert result["ok"] is True and result["transport"] == transport, result
    assert [s["step"] for s in steps] == STEPS
    assert steps[0]["transport"] == transport  # what sockjs-client says it used (`sock.transport`)
    return result


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 10)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sockjs_client_scenario(api: Api, transport: str) -> None:
    username = f"node-{transport}"
    result = check_succeeded(transport, *await run_scenario(api.base_url, transport, username))
    # what it did over the tunnel is there over plain HTTP
    login = await api.post("/tokens", {"username": username, "password": PASSWORD})
    assert login.status == 201
    emails = (await api.get("/emails", token=login.json["token"]["value"])).json["emails"]
    assert [(e["id"], e["subject"]) for e in emails] == [(result["email"], "hi")]


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 10)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_percent_signs_reach_sockjs_client_intact(api: Api, transport: str) -> None:
    subject = "100% off, %41 and %zz"
    code, lines, err = await run_scenario(api.base_url, transport, "percent", SCENARIO_SUBJECT=subject)
    check_succeeded(transport, code, lines, err)
