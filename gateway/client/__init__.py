"""A small asyncio client of the gateway, for back ends: requests and live events over one websocket.

It speaks the ``/ws`` protocol (docs/protocol.md) on the raw websocket endpoint
``/ws/websocket``, and keeps the promises of the JavaScript client
(docs/client.md): requests with timeouts and typed errors, queued under the
server's in-flight limit; one subscription whose events come once and in order
across reconnects (it resumes with the last cursor it delivered); token renewal
before expiry with no gap.  It knows nothing of the server's code, so a service
behind a firewall can use it with nothing else::

    async with Client("http://gateway.internal:5000") as client:
        login = await client.request("POST", "/tokens", {"username": "svc", "password": "..."})
        events = await client.subscribe(login.body["token"]["value"])
        async for event in events:
            print(event["type"], event["name"], event["cursor"])
"""

from gateway.client.connection import Client
from gateway.client.messages import GatewayError, Reply, token_expiry
from gateway.client.subscription import Subscription

__all__ = ["Client", "GatewayError", "Reply", "Subscription", "token_expiry"]
