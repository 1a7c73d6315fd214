"""Handlers of the pages and the spec: /console, /docs, their scripts, the client library, /openapi.*"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

import tornado.web

from gateway.state import State
from gateway.web import assets


def page_csp(script_origins: str = "") -> str:
    """The Content-Security-Policy of the pages: their own files only (plus sockjs-client's origin)."""
    return ("default-src 'self'; " f"script-src 'self'{script_origins}; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class SafeHeadersMixin(tornado.web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", page_csp())
        self.set_header("Referrer-Policy", "no-referrer")


class PageHandler(SafeHeadersMixin):
    """An HTML page of static/, with the sockjs-client URL filled in (``{{SOCKJS_URL}}``)."""

    def initialize(self, name: str) -> None:
        self.name = name

    def get(self) -> None:
        state: State = self.application.settings["state"]
        url = state.config.ws_sockjs_url
        origin = "" if url.startswith("/") else " " + "{0.scheme}://{0.netloc}".format(urlsplit(url))
        text = assets.page(self.name)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", page_csp(origin))
        self.set_header("Cache-Control", "no-cache")
        self.finish(text.replace("{{SOCKJS_URL}}", html.escape(url, quote=True)))


class AssetHandler(SafeHeadersMixin, tornado.web.StaticFileHandler):
    """The pages' scripts and styles, and the client library's modules."""


class SpecHandler(tornado.web.RequestHandler):
    """``/openapi.yaml`` and ``/openapi.json``: the spec the server is held to."""

    def initialize(self, form: str) -> None:
        self.form = form

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Access-Control-Allow-Origin", "*")  # a spec is public: tools on any origin may read it

    def get(self) -> None:
        yaml_text, json_text = assets.spec()
        if self.form == "yaml":
            self.set_header("Content-Type", "application/yaml; charset=utf-8")
            self.finish(yaml_text)
        else:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json_text)


def routes() -> list[Any]:
    return [
        (r"/console/?", PageHandler, {"name": "console.html"}),
        (r"/docs/?", PageHandler, {"name": "docs.html"}),
        (r"/static/(.+\.(?:js|css))", AssetHandler, {"path": str(assets.STATIC)}),
        (r"/client/([a-z]+\.js)", AssetHandler, {"path": str(assets.client_library())}),
        (r"/openapi\.yaml", SpecHandler, {"form": "yaml"}),
        (r"/openapi\.json", SpecHandler, {"form": "json"}),
    ]
