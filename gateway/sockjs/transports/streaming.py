"""The streaming transports: xhr_streaming, eventsource and htmlfile."""

from __future__ import annotations

from sockjs.tornado import proto
from sockjs.tornado.transports import eventsource, htmlfile, xhrstreaming
from sockjs.tornado.transports.htmlfile import HTMLFILE_HEAD
from sockjs.tornado.util import asynchronous

from gateway.sockjs.transports.common import (
    OriginMixin,
    ClientBoundMixin,
    EVENTSOURCE_ESCAPES,
    HTMLFILE_ESCAPES,
    Http10StreamingMixin,
    NoTransformMixin,
    StreamingMixin,
    callback_error,
)


class XhrStreamingTransport(OriginMixin, ClientBoundMixin, NoTransformMixin, Http10StreamingMixin, StreamingMixin, xhrstreaming.XhrStreamingTransport):
    """``/<server>/<session>/xhr_streaming``: no-transform; HTTP/1.0 close; heartbeats."""


class EventSourceTransport(OriginMixin, ClientBoundMixin, NoTransformMixin, Http10StreamingMixin, StreamingMixin, eventsource.EventSourceTransport):
    """``/<server>/<session>/eventsource``.

    Stock sends ``text/event-stream; charset=UTF-8``; the protocol (and the
    suite) expects plain ``text/event-stream`` - the EventSource spec fixes
    the encoding to UTF-8, a charset parameter is redundant.  The header is
    set inside the stock ``get`` before the prelude is flushed, so ``get``
    is re-implemented.
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        # sockjs-client passes every eventsource message through decodeURI (as
        # sockjs-node encodes them): a raw '%' would be mangled or throw, and a
        # line break would end the event early.
        super().send_pack(message.translate(EVENTSOURCE_ESCAPES), binary)

    @asynchronous
    def get(self, session_id: str) -> None:
        self.begin_stream("text/event-stream")
        self.start_stream(session_id, "\r\n")  # the prelude: a new line, for an old Opera bug


class HtmlFileTransport(OriginMixin, ClientBoundMixin, NoTransformMixin, Http10StreamingMixin, StreamingMixin, htmlfile.HtmlFileTransport):
    """``/<server>/<session>/htmlfile?c=<callback>``.

    Stock ``get`` has no validation (any ``c`` is accepted after stripping
    ``[\\W_]``), which the suite rejects, and the stripping mangles real
    sockjs-client callbacks such as ``_jp.abc123`` into ``jpabc123``.  The
    callback is validated like jsonp's and then used verbatim (it can only
    contain ``[a-zA-Z0-9-_.]``, so no HTML escaping is needed).
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        """Stock ``send_pack``, with the frame escaped for the inline script it is written into
        (stock writes ``</script>`` from a message as it is: the rest of the frame became markup)."""
        if binary:
            raise ValueError("binary frames are not supported by the htmlfile transport")
        self.active = False
        try:
            self.notify_sent(len(message))
            self.write(f"<script>\np({proto.json_encode(message).translate(HTMLFILE_ESCAPES)});\n</script>\r\n")
            self.flush().add_done_callback(self.send_complete)
        except IOError:
            # the connection dropped: close the session instead of raising all the way up
            self.session.delayed_close()
            self._detach()

    @asynchronous
    def get(self, session_id: str) -> None:
        self.begin_stream("text/html; charset=UTF-8")
        callback = self.get_argument("c", None, strip=False)
        error = callback_error(callback)
        if error:
            self.set_status(500)
            self.finish(error)
            return

        self.start_stream(session_id, HTMLFILE_HEAD % callback)  # padded to > 1 KiB so IE starts rendering
