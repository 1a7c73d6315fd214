"""The base of every API handler: JSON envelope, errors, body validation, auth and paging.

Handlers raise :class:`APIError` for anything a client did wrong, and let the
services' :class:`~gateway.errors.Refused` through (each kind has its status
in :data:`REFUSED_STATUS`); whatever else escapes becomes a 500 with no
traceback in the body (it goes to the log).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any, Callable, Iterable

import tornado
import tornado.web
from tornado import httputil

from gateway import jsontext
from gateway.auth import Identity, InvalidToken
from gateway.errors import Forbidden, Invalid, NotFound, Refused, Taken, TooLarge
from gateway.ids import is_id
from gateway.state import State
from gateway.store import Doc, Query, Store, StoreUnavailable
from gateway.validation import Field, parse_json

__all__ = ["APIError", "APIHandler", "Field", "NotFoundHandler", "checked_fields", "not_found"]

log = logging.getLogger("gateway.api")

MAX_PAGE = 100
DEFAULT_PAGE = 50
#: What a page on another origin may send and read (CORS).
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key"
CORS_EXPOSED_HEADERS = "X-Total-Count, Idempotent-Replayed, Retry-After, X-Request-Id"
#: API responses are data, never a document: nothing in them may run or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: A request id a client may choose (X-Request-Id); anything else is replaced by one of ours.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: The API's media type, and the ``Server`` header Tornado's ``clear()`` sets (:meth:`APIHandler.clear`).
JSON_TYPE = "application/json; charset=utf-8"
SERVER = f"TornadoServer/{tornado.version}"
#: The HTTP status of each kind of refusal the services raise.
REFUSED_STATUS: dict[type[Refused], int] = {Invalid: 400, Forbidden: 403, NotFound: 404, Taken: 409, TooLarge: 413}


class _Clock:
    """The ``Date`` header, formatted once a second: ``format_timestamp`` writes whole seconds."""

    second = -1
    text = ""

    @classmethod
    def date(cls) -> str:
        now = time.time()
        second = int(now)
        if second != cls.second:
            cls.text, cls.second = httputil.format_timestamp(now), second
        return cls.text


def api_headers(request_id: str) -> dict[str, str]:
    """The headers every API response starts with, in the order Tornado's ``clear()`` plus ours give them."""
    return {"Server": SERVER, "Content-Type": JSON_TYPE, "Date": _Clock.date(), "X-Request-Id": request_id,
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Content-Security-Policy": API_CSP}


class APIError(tornado.web.HTTPError):
    """An error a client gets as ``{"success": false, "message", "code"}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str = "Resource") -> APIError:
    return APIError(404, "not_found", f"{what} not found")


class APIHandler(tornado.web.RequestHandler):
    """Base of the JSON API handlers.

    Subclasses list the methods that need no token in ``public_methods``;
    every other method requires ``Authorization: Bearer <token>``, and finds
    the caller in :attr:`account`.
    """

    public_methods: frozenset[str] = frozenset()
    #: The methods a tunneled request may have answered without a ``RequestHandler``
    #: (:func:`handlers.direct.answer_directly`): reads that use only what its ``DirectCall`` has.
    direct_methods: frozenset[str] = frozenset()
    #: The methods that also take ``multipart/form-data`` bodies (authenticated ones only).
    multipart_methods: frozenset[str] = frozenset()
    identity: Identity | None = None
    #: This request's id: the client's ``X-Request-Id`` when it is a sane token, else a new one.
    request_id: str = ""

    @property
    def state(self) -> State:
        return self.application.settings["state"]

    @property
    def store(self) -> Store:
        return self.state.store

    @property
    def account(self) -> Doc:
        return self.auth.account

    @property
    def auth(self) -> Identity:
        """Who the caller is: the account and token record behind a verified token (on an authenticated method)."""
        assert self.identity is not None, "auth used on a public method"
        return self.identity

    # -- request ------------------------------------------------------------

    @property
    def account_id(self) -> str | None:
        """The caller's account id, once authenticated (the access log records it)."""
        return self.identity.account["id"] if self.identity is not None else None

    def clear(self) -> None:
        """Tornado's ``clear()`` with the same headers in the same order, made in one go: the ``Date``
        formatted once a second, and no per-value check of these constants (``set_header`` checks each)."""
        if not self.request_id:  # also called again when an error clears the headers: keep the id
            given = self.request.headers.get("X-Request-Id", "")
            self.request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        self._headers = httputil.HTTPHeaders(api_headers(self.request_id))
        self.set_default_headers()
        # the rest of Tornado's clear() (tornado/web.py)
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def set_default_headers(self) -> None:
        """The CORS headers, for a page of an allowed origin (:meth:`clear` sets the API's own)."""
        origin = self.request.headers.get("Origin")
        if origin is not None and self.origin_allowed(origin):
            any_origin = self.state.config.allowed_origins is None
            self.set_header("Access-Control-Allow-Origin", "*" if any_origin else origin)
            self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)
            self.set_header("Vary", "Origin")

    def origin_allowed(self, origin: str) -> bool:
        """Whether a page of ``origin`` may call the API (``--cors-origins``)."""
        return self.state.config.origin_allowed(origin)

    def options(self, *args: Any) -> None:
        """A CORS preflight: which methods and headers a page of an allowed origin may send."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin):
            raise APIError(403, "origin_not_allowed", f"Origin {origin[:100]!r} may not call this API")
        self.set_header("Access-Control-Allow-Methods", CORS_METHODS)
        self.set_header("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS)
        self.set_header("Access-Control-Max-Age", "600")
        self.clear_header("Content-Type")
        self.set_status(204)
        self.finish()

    def compute_etag(self) -> None:
        # API responses are per-user and change often; skip hashing every body.
        return None

    def check_etag_header(self) -> bool:
        # no ETag, no match: skip scanning If-None-Match on every GET
        return "Etag" in self._headers and super().check_etag_header()

    _counted = False

    async def prepare(self) -> None:
        self.state.inflight += 1  # a draining gateway waits for these
        self._counted = True
        limit = self.body_limit()
        if len(self.request.body) > limit:
            raise APIError(413, "too_large", f"Request body exceeds {limit} bytes")
        if self.request.method in BODY_METHODS and self.request.body:
            # a page can POST text/plain or a form to any origin without a preflight: only JSON is taken,
            # and multipart/form-data where a handler says so (every such route needs a bearer token,
            # which no cross-site form can send)
            media = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
            if media != "application/json" and not (media == "multipart/form-data"
                                                    and self.request.method in self.multipart_methods):
                raise APIError(415, "unsupported_media_type", "Request bodies must be application/json"
                               + (" or multipart/form-data" if self.multipart_methods else ""))
        if self.request.method == "OPTIONS":
            return  # a preflight needs no token
        if self.request.method not in self.public_methods and self.request.method in self.SUPPORTED_METHODS:
            if self._has_method(self.request.method):
                self.identity = await self.authenticate()

    def body_limit(self) -> int:
        """The largest request body this handler takes (``--max-body``)."""
        return self.state.config.max_body

    def on_finish(self) -> None:
        if self._counted:
            self._counted = False
            self.state.inflight -= 1

    def _has_method(self, method: str) -> bool:
        return getattr(type(self), method.lower()) is not getattr(tornado.web.RequestHandler, method.lower())

    async def authenticate(self) -> Identity:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise APIError(401, "unauthorized", "Missing Authorization header", {"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "unauthorized", "Authorization must be 'Bearer <token>'", {"WWW-Authenticate": "Bearer"})
        try:
            return await self.state.tokens.verify(token.strip())
        except InvalidToken as exc:
            raise APIError(401, "invalid_token", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    def body_fields(self, fields: dict[str, Field], *, partial: bool = False, text: bytes | None = None
                    ) -> dict[str, Any]:
        """The request's JSON object (or ``text``, JSON from elsewhere in the request), checked
        against ``fields``; only the fields given are returned.

        With ``partial`` (updates), no field is required but at least one must be given.
        """
        text = self.request.body if text is None else text
        if not text.strip():
            raise APIError(400, "invalid_json", "Request body must be a JSON object")
        try:
            body = parse_json(text)
        except (ValueError, UnicodeDecodeError) as exc:  # TooDeep is a ValueError
            raise APIError(400, "invalid_json", f"Malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise APIError(400, "invalid_json", "Request body must be a JSON object")
        return checked_fields(body, fields, partial=partial)

    def path_id(self, value: str, what: str) -> str:
        """A path segment that must be a document id; malformed ones are a 404 like any unknown id."""
        if not is_id(value):
            raise not_found(what)
        return value

    async def owned(self, table: str, id: str, what: str) -> Doc:
        """The caller's document, or 404 (also for another account's)."""
        doc = await self.store.get(table, self.path_id(id, what))
        if doc is None or doc.get("owner") != self.account["id"]:
            raise not_found(what)
        return doc

    def int_argument(self, name: str, default: int, low: int, high: int | None = None) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise APIError(400, "invalid_parameter", f"'{name}' must be an integer") from None
        if value < low or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise APIError(400, "invalid_parameter", f"'{name}' must be {limit}")
        return value

    def page(self, where: dict[str, Any], sortable: Iterable[str], default_sort: str) -> Query:
        """A query for one page of a list, from ``limit``, ``offset`` and ``sort`` (``field`` or ``-field``)."""
        sort = self.get_query_argument("sort", default_sort)
        name = sort.removeprefix("-")
        if name not in sortable:
            raise APIError(400, "invalid_parameter", f"'sort' must be one of: {', '.join(sorted(sortable))}, optionally prefixed with '-'")
        return Query(
            where=where,
            order_by=[(name, sort.startswith("-"))],
            limit=self.int_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE),
            offset=self.int_argument("offset", 0, 0),
        )

    async def list_page(self, table: str, query: Query) -> list[Doc]:
        """One page of documents, with the full count in ``X-Total-Count``."""
        total = await self.store.count(table, query.where)
        self.set_header("X-Total-Count", str(total))
        return await self.store.find(table, query) if query.offset < total else []

    async def reply_listed(self, table: str, query: Query, name: str, view: Callable[[Doc], Doc]) -> None:
        """Finish with one page of a list as ``{"success": true, name: [...]}``, its full count in
        ``X-Total-Count``: the store's encoded views of the page joined when it keeps them
        (:meth:`~gateway.store.Documents.find_listed`: each is orjson's encoding of ``view(doc)``, so
        the body is the very bytes :meth:`reply` would write), else each document found, through ``view``."""
        total = await self.store.count(table, query.where)
        self.set_header("X-Total-Count", str(total))
        if query.offset < total:
            encoded = await self.store.find_listed(table, query)
            if encoded is not None:
                self.finish(jsontext.dumps({"success": True, name: []})[:-2] + b",".join(encoded) + b"]}")
                return
        docs = await self.store.find(table, query) if query.offset < total else []
        self.reply(**{name: [view(doc) for doc in docs]})

    # -- response -----------------------------------------------------------

    def reply(self, http_status: int = 200, /, **payload: Any) -> None:
        """Finish with ``{"success": true, **payload}`` (compact JSON, non-ASCII as UTF-8: :mod:`gateway.jsontext`)."""
        self.set_status(http_status)
        self.finish(jsontext.dumps({"success": True, **payload}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, APIError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, Refused):  # raised by a service: as an APIError of its kind's status
            self.set_status(REFUSED_STATUS.get(type(exc), 400))
            code, message = exc.code, exc.message
        elif isinstance(exc, StoreUnavailable):
            self.set_status(503)
            code, message = "store_unavailable", "The store is unavailable; try again shortly"
        elif status_code == 405:
            code, message = "method_not_allowed", f"Method {self.request.method} not allowed on {self.request.path}"
        elif status_code < 500:
            code = "bad_request" if status_code == 400 else f"http_{status_code}"
            message = getattr(exc, "log_message", None) or self._reason
        else:
            code, message = "internal_error", "Internal server error"
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(jsontext.dumps({"success": False, "message": message, "code": code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (APIError, Refused)):
            return  # an answered client error; the access log has it
        target = self.request.path + ("?***" if self.request.query else "")  # a query may hold a token
        if isinstance(value, StoreUnavailable):
            log.warning("%s %s: %s", self.request.method, target, value)
        elif isinstance(value, tornado.web.HTTPError):
            log.warning("%d %s %s: %s", value.status_code, self.request.method, target, value.log_message or "")
        else:  # Tornado's own would log the whole request, Authorization header and all
            log.error("uncaught exception in %s %s", self.request.method, target, exc_info=(typ, value, tb))


def checked_fields(body: dict[str, Any], fields: dict[str, Field], *, partial: bool = False, where: str = ""
                   ) -> dict[str, Any]:
    """``body`` checked against ``fields`` (an :class:`APIError` for the first problem; ``where``
    prefixes the field names in messages, e.g. ``attachments[2].``)."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise APIError(400, "unknown_field", f"Unknown field: {', '.join(where + name for name in unknown)}")
    for name, spec in fields.items():
        if name not in body:
            if spec.required and not partial:
                raise APIError(400, "missing_field", f"Missing field: {where}{name}")
            continue
        problem = spec.problem(body[name])
        if problem:
            raise APIError(400, "invalid_field", f"Field '{where}{name}' {problem}")
    if partial and not body:
        raise APIError(400, "missing_field", f"Give at least one of: {', '.join(fields)}")
    return body


class NotFoundHandler(APIHandler):
    """Every unknown path: the error envelope, whatever the method."""

    def prepare(self) -> None:  # type: ignore[override]
        raise not_found("Route")
