"""``GET /health``: the process is up, and whether the store answers (503 when it does not)."""

from __future__ import annotations

import json

from handlers.base import APIHandler


class HealthHandler(APIHandler):
    public_methods = frozenset({"GET"})

    async def get(self) -> None:
        if await self.store.ping():
            self.reply(status="ok", store="up")
            return
        self.set_status(503)
        self.finish(json.dumps({"success": False, "message": "The store does not answer", "code": "store_unavailable",
                                "status": "degraded", "store": "down"}, separators=(",", ":")))


routes = [(r"/health", HealthHandler)]
