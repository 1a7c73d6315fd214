"""Running the real sockjs-client (tests/js) against the gateway, and judging what it printed.

``scenario.js`` (Node) and ``browser.js`` (headless Chromium) both run
``scenario-core.js``: one JSON line per step, then a result line.  They run as
asyncio subprocesses, so the server, on the test's event loop, keeps serving.
Their dependencies come from ``npm ci --prefix tests/js`` (part of the test
command in README.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

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


def check_succeeded(transport: str, code: int | None, lines: list[dict[str, Any]], err: str) -> dict[str, Any]:
    """The scenario passed every step on the forced transport; its result line."""
    assert lines and code == 0, f"the scenario exited with {code}: {err.strip() or lines}"
    *steps, result = lines
    assert result["ok"] is True and result["transport"] == transport, result
    assert [s["step"] for s in steps] == STEPS
    assert steps[0]["transport"] == transport  # what sockjs-client says it used (`sock.transport`)
    return result
