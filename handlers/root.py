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
            docs={"api": "docs/openapi.yaml", "protocol": "docs/protocol.md"},
            sockjs="/ws",
        )


routes = [(r"/", RootHandler)]
