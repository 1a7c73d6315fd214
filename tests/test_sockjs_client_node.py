"""The real ``sockjs-client`` (npm, run by Node) against the running gateway, one forced transport at a time.

``tests/js/scenario.js`` runs ``tests/js/scenario-core.js``: it tunnels a
registration, a login and a few API calls, subscribes, unsubscribes, sends a
message that is not JSON and checks the session is still usable.  Without Node
or ``npm ci --prefix tests/js`` these tests skip.  The transports only a browser
has are in ``test_sockjs_client_browser.py``.
"""

from __future__ import annotations


import pytest

from tests.conftest import Api
from tests.sockjs_client_runner import (
    NODE, SCENARIO_TIMEOUT, check_done_over_tunnel, check_succeeded, installed, run_script,
)

TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: these tests run the real sockjs-client in Node"),
    pytest.mark.skipif(not installed("sockjs-client"),
                       reason="tests/js/node_modules is missing: run `npm ci --prefix tests/js`"),
]


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 10)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sockjs_client_scenario(api: Api, transport: str) -> None:
    username = f"node-{transport}"
    result = check_succeeded(transport, *await run_script("scenario.js", api.base_url, transport, username))
    await check_done_over_tunnel(api, username, result)


@pytest.mark.gen_test(timeout=SCENARIO_TIMEOUT + 10)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_percent_signs_reach_sockjs_client_intact(api: Api, transport: str) -> None:
    subject = "100% off, %41 and %zz"
    code, lines, err = await run_script("scenario.js", api.base_url, transport, "percent",
                                        SCENARIO_SUBJECT=subject)
    check_succeeded(transport, code, lines, err)
