"""The client library (clients/js) over the real ``sockjs-client`` in headless Chromium, on every transport.

A page on another origin than the gateway's (a webmail front end served from
its own host) loads sockjs-client 1.6.1, the client library as ES modules and
``tests/js/library-scenario.js``; ``tests/js/browser.js`` opens it with
playwright-core in Debian's Chromium and runs the scenario through the library
on one forced transport, including those only a browser has:
the iframe ones (``/ws/iframe.html`` loads sockjs-client from
``--ws-sockjs-url``, here served by the same page server) and jsonp-polling.
Between them they use every transport the server offers: websocket,
xhr_streaming, xhr, eventsource, htmlfile and jsonp.  Without Chromium, Node or
``npm ci --prefix tests/js`` these tests skip.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from tests.conftest import PASSWORD, api_for
from tests.sockjs_client_runner import (
    JS_DIR, NODE, SCENARIO_TIMEOUT, check_done_over_tunnel, check_succeeded, installed, run_script, SharedChromium,
)

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "iframe-eventsource", "iframe-htmlfile",
              "iframe-xhr-polling", "jsonp-polling"]
PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>webmail</title>
<script src="/sockjs.min.js"></script>
<script type="module">
  import * as gateway from "/client/index.js";
  import { runLibraryScenario } from "/library-scenario.js";
  window.gateway = gateway;
  window.runLibraryScenario = runLibraryScenario;
</script>
"""
CLIENT_SRC = JS_DIR.parent.parent / "clients" / "js" / "src"

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM} (Debian: apt install chromium; or set CHROMIUM)"),
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: it drives Chromium with playwright-core"),
    pytest.mark.skipif(not (installed("sockjs-client") and installed("playwright-core")),
                       reason="tests/js/node_modules is missing: run `npm ci --prefix tests/js`"),
]


class _Page(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE)


@pytest.fixture(scope="module")
def chromium() -> Any:
    """One Chromium, and one Node that runs each test's browser script in turn (starting Node with
    playwright-core and a browser cost about a second a test); each script's pages in a context of their own."""
    shared = SharedChromium(CHROMIUM)
    yield shared
    shared.close()


@pytest.fixture
def page_server(io_loop: Any) -> Any:
    """The front end's origin: the page, sockjs-client and the scenario, on a port of its own."""
    app = tornado.web.Application([
        (r"/", _Page),
        (r"/(sockjs\.min\.js)", tornado.web.StaticFileHandler,
         {"path": str(JS_DIR / "node_modules" / "sockjs-client" / "dist")}),
        (r"/(library-scenario\.js)", tornado.web.StaticFileHandler, {"path": str(JS_DIR)}),
        (r"/client/([a-z]+\.js)", tornado.web.StaticFileHandler, {"path": str(CLIENT_SRC)}),
    ])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sockjs_client_in_chromium(start_gateway: Any, page_server: str, chromium: SharedChromium,
                                         transport: str) -> None:
    gateway = await start_gateway(ws_sockjs_url=f"{page_server}/sockjs.min.js")
    api = api_for(gateway)
    username = f"browser-{transport}"
    code, lines, err = await run_script("browser.js", f"{page_server}/", api.base_url, transport, username,
                                        chromium=chromium)
    result = check_succeeded(transport, code, lines, err)
    await check_done_over_tunnel(api, username, result)


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_markup_and_percent_signs_reach_the_browser_intact(start_gateway: Any, page_server: str,
                                                                 chromium: SharedChromium, transport: str) -> None:
    # htmlfile frames are <script> blocks and eventsource frames go through decodeURI: neither
    # may end early, run anything, or mangle the text (U+2028, which a subject may no longer hold,
    # never reaches a frame unescaped: every JSON the server writes is ASCII)
    subject = "100% </script><script>parent.pwned=1</script> <!-- %zz"
    gateway = await start_gateway(ws_sockjs_url=f"{page_server}/sockjs.min.js")
    code, lines, err = await run_script("browser.js", f"{page_server}/", api_for(gateway).base_url,
                                        transport, "markup", chromium=chromium,
                                        SCENARIO_SUBJECT=subject)
    check_succeeded(transport, code, lines, err)


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 20)
async def test_the_library_waits_while_offline_and_reconnects_when_online(start_gateway: Any, page_server: str,
                                                                          chromium: SharedChromium) -> None:
    gateway = await start_gateway(ws_sockjs_url=f"{page_server}/sockjs.min.js")
    code, lines, err = await run_script("offline.js", f"{page_server}/", api_for(gateway).base_url,
                                        chromium=chromium)
    assert code == 0 and lines, err
    result = lines[-1]
    assert result["ok"], result
    assert result["states"] == ["open", "reconnecting", "open"]
    # no retry while offline (with waits of at most 50 ms it would have tried about ten times)
    assert (result["whileOffline"], result["triedOffline"], result["reply"]) == ("reconnecting", 0, 200)


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 20)
async def test_a_page_on_another_origin_calls_the_api_over_plain_http(start_gateway: Any, page_server: str,
                                                                      chromium: SharedChromium) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    await api.post("/emails", {"to": ["bob@example.org"], "text": "x"}, token=token)
    code, lines, err = await run_script("cors.js", f"{page_server}/", api.base_url, "alice", PASSWORD,
                                        chromium=chromium)
    assert code == 0 and lines, err
    seen = lines[-1]
    assert seen["ok"] and seen["origin"] == page_server, seen
    assert (seen["login"], seen["emails"], seen["total"], seen["count"], seen["formRefused"]) == (201, 200, "1", 1, 415)
