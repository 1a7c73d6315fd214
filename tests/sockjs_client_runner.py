"""Running the real sockjs-client (tests/js) against the gateway, and judging what it printed.

``scenario.js`` (Node) and ``browser.js`` (headless Chromium) both run
``scenario-core.js``: one JSON line per step, then a result line.  They run as
asyncio subprocesses, so the server, on the test's event loop, keeps serving.
Their dependencies come from ``npm ci --prefix tests/js`` (part of the test
command in README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import PASSWORD, Api

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
STEPS = ["open", "register", "login", "send email", "list emails", "me",
         "subscribe", "event", "unsubscribe", "bad message", "still usable", "close"]
#: The scripts' own limit; a test's is longer so the script reports which step hung.
SCENARIO_TIMEOUT = 20


def installed(package: str) -> bool:
    return (JS_DIR / "node_modules" / package / "package.json").is_file()


async def run_script(script: str, *args: str, **env: str) -> tuple[int | None, list[dict[str, Any]], str]:
    """Run ``tests/js/<script>`` to the end: its exit status, its JSON lines and its stderr."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS_DIR / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SCENARIO_TIMEOUT_MS": str(SCENARIO_TIMEOUT * 1000), **env},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCENARIO_TIMEOUT + 15)
    except asyncio.TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(f"{script} outlived its own timeout\nstdout:\n{stdout.decode()}\n"
                             f"stderr:\n{stderr.decode()}") from None
    out, err = stdout.decode(), stderr.decode()
    try:
        lines = [json.loads(line) for line in out.splitlines()]
    except ValueError:
        raise AssertionError(f"{script} printed something that is not a JSON line\nstdout:\n{out}\n"
                             f"stderr:\n{err}") from None
    return process.returncode, lines, err


@contextlib.contextmanager
def shared_chromium(chromium: str) -> Iterator[str]:
    """A headless Chromium (``tests/js/chromium-server.js``) for several scripts in turn: its endpoint,
    for their ``CHROMIUM_ENDPOINT``; each script's pages are in a context of their own."""
    assert NODE is not None
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([NODE, str(JS_DIR / "chromium-server.js")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, env={**os.environ, "CHROMIUM": chromium})
        assert process.stdin is not None and process.stdout is not None
        bound = threading.Timer(SCENARIO_TIMEOUT, process.kill)  # a browser that hangs while starting
        bound.start()
        try:
            endpoint = process.stdout.readline().decode().strip()
            bound.cancel()
            if not endpoint:
                process.wait()
                log.seek(0)
                raise AssertionError(f"chromium-server.js exited with {process.returncode}: {log.read().decode()}")
            yield endpoint
        finally:
            bound.cancel()
            process.stdin.close()  # it closes the browser and exits
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def check_done_over_tunnel(api: Api, username: str, result: dict[str, Any]) -> None:
    """What the scenario did over the tunnel is there over plain HTTP: its account, and the email it sent."""
    login = await api.post("/tokens", {"username": username, "password": PASSWORD})
    assert login.status == 201
    emails = (await api.get("/emails?label=sent", token=login.json["token"]["value"])).json["emails"]
    assert sorted((e["id"], e["subject"]) for e in emails if e["to"] == ["bob@x.org"]) == [(result["email"], "hi")]


def check_succeeded(transport: str, code: int | None, lines: list[dict[str, Any]], err: str) -> dict[str, Any]:
    """The scenario passed every step on the forced transport; its result line."""
    assert lines and code == 0, f"the scenario exited with {code}: {err.strip() or lines}"
    *steps, result = lines
    assert result["ok"] is True and result["transport"] == transport, result
    assert [s["step"] for s in steps] == STEPS
    assert steps[0]["transport"] == transport  # what sockjs-client says it used (`sock.transport`)
    return result
