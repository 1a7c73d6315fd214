"""``GET /``: what this server is and where its docs are."""

from __future__ import annotations

from gateway import __version__
from handlers.base import APIHandler


class RootHandler(APIHandler):
    public_methods = frozenset({"GET"})

    def get(self) -> None:
        self.reply(
            name="gateway",
            version=__version__,
            docs={"api": "/docs", "console": "/console", "openapi": "/openapi.json", "openapi_yaml": "/openapi.yaml",
                  "protocol": "docs/protocol.md"},
            sockjs="/ws",
            # what a client must stay within (the JavaScript client queues requests to ws_max_inflight)
            limits={
                "max_body": self.state.config.max_body,
                "ws_max_message": self.state.config.ws_max_message,
                "ws_max_inflight": self.state.config.ws_max_inflight,
                "ws_max_queue": self.state.config.ws_max_queue,
            },
        )


routes = [(r"/", RootHandler)]
