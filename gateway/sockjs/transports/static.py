"""The static endpoints: the iframe page and ``/info``."""

from __future__ import annotations

import hashlib
import json
import random

from sockjs.tornado import static
from tornado.escape import utf8

from gateway.sockjs.transports.common import MAX_ENTROPY, NoTransformMixin, OriginMixin

# Current SockJS protocol iframe page (sockjs-node >= 0.3.x serving
# sockjs-client 1.x).  The stock template is the SockJS 0.3 one
# (``_sockjs_onload`` callback, inline script before the src script).
IFRAME_TEXT = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


class IFrameHandler(static.IFrameHandler):
    """``/iframe[0-9-.a-z_]*.html`` with the current protocol's template."""

    def get(self) -> None:
        data = utf8(IFRAME_TEXT % self.server.settings["sockjs_url"])
        etag = hashlib.md5(data).hexdigest()

        if etag in (self.request.headers.get("If-None-Match") or ""):
            # 304 must not carry a body nor a Content-Type.
            self.clear_header("Content-Type")
            self.set_status(304)
            return

        self.enable_cache()
        self.set_header("Etag", etag)
        self.write(data)


class InfoHandler(OriginMixin, NoTransformMixin, static.InfoHandler):
    """``/info``: no-transform, and an ``entropy`` within 0..2^32-1 (stock draws up to ``sys.maxsize``)."""

    def get(self) -> None:
        self.preflight()
        self.disable_cache()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(json.dumps({
            "websocket": self.server.websockets_enabled,
            "cookie_needed": self.server.cookie_needed,
            "origins": self.server.settings.get("origins_reported", ["*:*"]),
            "entropy": random.randint(0, MAX_ENTROPY),
        }))
