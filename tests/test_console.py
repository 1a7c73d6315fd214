"""The console (/console) and the API reference (/docs) in Debian's Chromium, used as a person would:
log in, see SMTP mail appear without a reload, send to a second account open in another page, try a
call, watch the events, survive a gateway restart, and call an operation from /docs.  Screenshots of
both pages go to tests/screenshots/ (see README.md).  Skips, saying why, without Chromium or Node."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import yaml

from gateway.app.server import Gateway
from tests.conftest import api_for, make_config
from tests.peers import free_port, in_thread, smtp_send
from tests.sockjs_client_runner import JS_DIR, NODE, installed
from tests.test_sockjs_client_browser import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM} (Debian: apt install chromium; or set CHROMIUM)"),
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: it drives Chromium with playwright-core"),
    pytest.mark.skipif(not installed("playwright-core"), reason="run `npm ci --prefix tests/js`"),
]


def operation_count() -> int:
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    return sum(1 for item in spec["paths"].values() for method in ("get", "post", "put", "delete", "patch")
               if method in item)


@pytest.mark.gen_test(timeout=90)
async def test_the_console_and_the_docs_in_chromium(tmp_path: Any) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    # sockjs-client for the SockJS transports, from a server of its own (as --ws-sockjs-url names one)
    scripts = tornado.httpserver.HTTPServer(tornado.web.Application([
        (r"/(sockjs\.min\.js)", tornado.web.StaticFileHandler,
         {"path": str(JS_DIR / "node_modules" / "sockjs-client" / "dist")})]))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    scripts.add_sockets(sockets)
    sockjs_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/sockjs.min.js"
    config = make_config(tmp_path, port=free_port(), smtp=f"127.0.0.1:{free_port()}", ws_sockjs_url=sockjs_url)
    gateway = Gateway(config)
    await gateway.start()
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS_DIR / "console.js"), api_for(gateway).base_url, str(gateway.smtp_port), str(SCREENSHOTS),
        str(operation_count()), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert process.stdout is not None and process.stdin is not None
    steps: list[dict[str, Any]] = []
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if not line:
                break
            steps.append(json.loads(line))
            if steps[-1].get("step") == "restart":
                await gateway.stop()
                gateway = Gateway(config)  # the same port and data: a restart
                await gateway.start()
                subject = "While the console was away"
                await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["alice@localhost"],
                                f"Subject: {subject}\r\n\r\nbody")
                process.stdin.write(f"restarted {subject}\n".encode())
                await process.stdin.drain()
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await gateway.stop()
        scripts.stop()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert steps and steps[-1] == {"ok": True}, (steps, stderr)
    by_step = {s["step"]: s for s in steps if "step" in s}
    assert by_step["logged in"]["transport"] == "over websocket-raw"
    assert by_step["tried a call"]["emails"] == 1
    assert by_step["switched transport"]["transport"] == "over xhr-streaming"
    assert by_step["event log"]["entries"] >= 2 and "receipt  Hello over SMTP" in by_step["event log"]["first"]
    docs = by_step["docs"]
    assert (docs["operations"], docs["status"]) == (docs["expected"], "200 OK")
    assert (SCREENSHOTS / "console.png").stat().st_size > 0 and (SCREENSHOTS / "docs.png").stat().st_size > 0
