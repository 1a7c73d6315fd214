"""Health: ``/health`` (the store answers), ``/health/live`` (liveness) and ``/health/ready`` (readiness)."""

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


class LiveHandler(APIHandler):
    """``GET /health/live``: the process is up and its loop turns (for a liveness probe: restart it if not)."""

    public_methods = frozenset({"GET"})

    def get(self) -> None:
        self.reply(status="ok")


class ReadyHandler(APIHandler):
    """``GET /health/ready``: whether to send this process traffic: the store answers and every change
    feed is open (503, saying which is not, while one is being reopened)."""

    public_methods = frozenset({"GET"})

    async def get(self) -> None:
        store = await self.store.ping()
        feeds = self.state.feeds()
        if store and all(feeds.values()) and not self.state.draining:
            self.reply(status="ready", store="up", feeds=feeds)
            return
        self.set_status(503)
        self.finish(json.dumps({"success": False, "message": "Not ready: draining" if self.state.draining
                                else "Not ready: the store or a change feed is down",
                                "code": "not_ready", "status": "not_ready", "store": "up" if store else "down",
                                "feeds": feeds}, separators=(",", ":")))


routes = [(r"/health", HealthHandler), (r"/health/live", LiveHandler), (r"/health/ready", ReadyHandler)]
