"""Assembles the Tornado application: the one route table for HTTP and the tunnel."""

from __future__ import annotations

from typing import Any

import tornado.web

from gateway.state import State
from handlers import api_routes
from handlers.base import NotFoundHandler


def make_app(state: State, extra_routes: list[tuple[str, Any]] | None = None, **settings: Any) -> tornado.web.Application:
    """The application serving the API (plus ``extra_routes``, e.g. SockJS), with ``state`` in its settings."""
    return tornado.web.Application(
        (extra_routes or []) + api_routes(),
        state=state,
        default_handler_class=NotFoundHandler,
        xsrf_cookies=False,  # bearer-token API: no cookies to forge, and tunneled POSTs must pass
        compress_response=False,
        **settings,
    )
