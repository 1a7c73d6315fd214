"""The project's fixes to sockjs-tornado 1.0.7's transports, so it speaks the SockJS protocol.

Nothing in the installed ``sockjs.tornado`` package is edited: every fix is a
subclass of one of its handler classes, and :data:`OVERRIDES` maps each stock
class to its replacement for :class:`gateway.sockjs.router.Router`'s URL table.
With them the public sockjs-protocol suite passes 68/68 (``docs/protocol.md``
says how to run it); ``tests/test_sockjs_conformance.py`` keeps each fix.

* ``Cache-Control`` of non-cacheable responses gains ``no-transform``.
* xhr-polling and jsonp-polling answer each request with exactly one frame
  (a close frame sent from ``on_open`` used to overflow the committed
  ``Content-Length``: ``HTTPOutputError`` in the log and a hung client).
* jsonp: ``/**/`` prefix before the callback; jsonp and htmlfile callbacks
  are validated (they are reflected into a script: an injection hole).
* eventsource: ``Content-Type: text/event-stream`` without a charset.
* HTTP/1.0 streaming: the connection closes when a streaming response ends.
* xhr_send keeps ``text/plain`` on its 204; jsonp_send client errors are not
  logged as server errors.
* iframe page of the current protocol; ``/info`` entropy within 32 bits.
* htmlfile frames escaped for their inline ``<script>``; heartbeats on the
  streaming transports.
* websocket: bodiless 405 with ``Allow: GET`` for non-GET; broken JSON drops
  the connection without a traceback; a send to a closing websocket ends the
  session instead of raising ``WebSocketClosedError``; raw ``/websocket`` closes with the
  session's code and reason; hixie-76 (:mod:`gateway.sockjs.hixie76`); version 13 frames read
  and written on an asyncio transport (:mod:`gateway.sockjs.rfc6455`).
"""

from __future__ import annotations

# The stock modules under names of their own: the submodules below (static, websocket) would
# otherwise take their names in this package's namespace.
from sockjs.tornado import static as stock_static
from sockjs.tornado.transports import eventsource as stock_eventsource
from sockjs.tornado.transports import htmlfile as stock_htmlfile
from sockjs.tornado.transports import jsonp as stock_jsonp
from sockjs.tornado.transports import rawwebsocket as stock_rawwebsocket
from sockjs.tornado.transports import websocket as stock_websocket
from sockjs.tornado.transports import xhr as stock_xhr
from sockjs.tornado.transports import xhrstreaming as stock_xhrstreaming

from gateway.sockjs.transports.polling import (
    JSONPSendHandler,
    JSONPTransport,
    XhrPollingTransport,
    XhrSendHandler,
)
from gateway.sockjs.transports.static import IFrameHandler, InfoHandler
from gateway.sockjs.transports.streaming import (
    EventSourceTransport,
    HtmlFileTransport,
    XhrStreamingTransport,
)
from gateway.sockjs.transports.websocket import (
    RawWebSocketTransport,
    WebSocketTransport,
)

#: sockjs-tornado's handler classes and the project's replacements.
OVERRIDES: dict[type, type] = {
    stock_xhr.XhrPollingTransport: XhrPollingTransport,
    stock_xhr.XhrSendHandler: XhrSendHandler,
    stock_jsonp.JSONPTransport: JSONPTransport,
    stock_jsonp.JSONPSendHandler: JSONPSendHandler,
    stock_xhrstreaming.XhrStreamingTransport: XhrStreamingTransport,
    stock_eventsource.EventSourceTransport: EventSourceTransport,
    stock_htmlfile.HtmlFileTransport: HtmlFileTransport,
    stock_websocket.WebSocketTransport: WebSocketTransport,
    stock_rawwebsocket.RawWebSocketTransport: RawWebSocketTransport,
    stock_static.IFrameHandler: IFrameHandler,
    stock_static.InfoHandler: InfoHandler,
}
