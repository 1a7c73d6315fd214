"""The polling transports: xhr, xhr_send, jsonp and jsonp_send."""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import parse_qs

from sockjs.tornado import proto
from sockjs.tornado.transports import jsonp, xhr
from sockjs.tornado.util import bytes_to_str
from tornado.escape import utf8

from gateway.sockjs.transports.common import (
    OriginMixin,
    LOG,
    ClientBoundMixin,
    NoTransformMixin,
    SinglePollResponseMixin,
    callback_error,
    decode_messages,
)


class XhrPollingTransport(OriginMixin, ClientBoundMixin, NoTransformMixin, SinglePollResponseMixin, xhr.XhrPollingTransport):
    """``/<server>/<session>/xhr``: no-transform; one frame per response."""


class XhrSendHandler(OriginMixin, ClientBoundMixin, NoTransformMixin, xhr.XhrSendHandler):
    """``/<server>/<session>/xhr_send``.

    * no-transform.
    * The protocol wants ``Content-Type: text/plain`` even on the 204 (else
      Firefox tries to parse the empty body as XML and logs an error), and
      the stock handler sets it - but Tornado >= 5's ``finish()`` strips
      Content-Type from 204 responses.  Flushing the headers before Tornado's
      automatic ``finish()`` keeps it (no body, no Content-Length needed:
      a 204 never has a body).
    """

    def post(self, session_id: str) -> None:
        super().post(session_id)
        if self.get_status() == 204:
            self.flush()


class JsonpCommentPrefixMixin(jsonp.JSONPTransport):
    """jsonp frame as ``/**/callback("<frame>");``.

    The leading empty comment defends against Rosetta-Flash style attacks
    (a response body that starts with attacker-chosen bytes can be loaded
    as a SWF); sockjs-node sends it and the suite requires it.  The stock
    ``send_pack`` builds the body inline, so it is replaced.
    """

    callback: str

    def send_pack(self, message: str, binary: bool = False) -> None:
        if binary:
            raise ValueError("binary not supported for JSONPTransport")

        self.active = False
        body = utf8(f"/**/{self.callback}({proto.json_encode(message)});\r\n")
        try:
            self.set_header("Content-Type", "application/javascript; charset=UTF-8")
            # Length of the encoded body (stock uses len() of the str).
            self.set_header("Content-Length", len(body))
            self.write(body)
            self.flush().add_done_callback(self.send_complete)
        except OSError:
            # Connection dropped: close the session on the next tick instead
            # of propagating the error (same as stock).
            if self.session is not None:
                self.session.delayed_close()


class JSONPTransport(OriginMixin, ClientBoundMixin, NoTransformMixin, SinglePollResponseMixin, JsonpCommentPrefixMixin):
    """``/<server>/<session>/jsonp?c=<callback>``.

    no-transform; one frame per response; ``/**/`` prefix; and the callback,
    reflected into a script, is validated: missing -> 500 ``"callback"
    parameter required``, outside ``[a-zA-Z0-9-_.]`` -> 500 ``invalid
    "callback" parameter`` (stock accepts anything).
    """

    def get(self, session_id: str) -> Awaitable[None] | None:
        error = callback_error(self.get_argument("c", None, strip=False))
        if error:
            self.handle_session_cookie()
            self.disable_cache()
            self.set_status(500)
            self.finish(error)
            return None
        # Stock ``get`` re-reads ``c`` into ``self.callback`` and attaches.
        return super().get(session_id)


class JSONPSendHandler(OriginMixin, ClientBoundMixin, NoTransformMixin, jsonp.JSONPSendHandler):
    """``/<server>/<session>/jsonp_send``.

    * no-transform.
    * A form body without a ``d`` field is a client error (500 "Payload
      expected."), but stock logs it with ``LOG.exception`` - an ERROR line
      with a bogus ``NoneType: None`` traceback.  Client errors are now
      logged at debug level; only a failing application ``on_message`` is
      logged as an error.
    * The form is parsed with ``parse_qs`` and the media type is compared
      without parameters, so ``d`` need not be the first field and
      ``application/x-www-form-urlencoded; charset=UTF-8`` is accepted (stock
      requires the exact string and ``d=`` at offset 0).
    """

    def post(self, session_id: str) -> None:
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()

        session = self._get_session(session_id)
        if session is None or session.is_closed:
            self.set_status(404)
            return

        data = bytes_to_str(self.request.body)
        media_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded":
            data = parse_qs(data).get("d", [""])[0]

        if not data:
            LOG.debug("jsonp_send: payload expected")
            self.set_status(500)
            self.write("Payload expected.")
            return

        try:
            messages = decode_messages(data)
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            LOG.debug("jsonp_send: broken JSON encoding")
            self.set_status(500)
            self.write("Broken JSON encoding.")
            return

        try:
            session.on_messages(messages)
        except Exception:
            LOG.exception("jsonp_send: on_message() failed")
            session.close()
            self.set_status(500)
            self.write("Message handler failed.")
            return

        # 200 with a body rather than 204: Konqueror mishandles 204 here.
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.write("ok")
