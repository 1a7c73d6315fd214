"""A bare Tornado hello-world server, the floor bench/tunnel.py reports the HTTP path against.

``python bench/hello.py PORT`` serves ``GET /`` with a 13-byte body on 127.0.0.1:PORT (HTTP/1.1
keep-alive), on the event loop the gateway runs on by default (uvloop when installed, ``--loop asyncio``
for asyncio's own).
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world!")


async def serve(port: int) -> None:
    tornado.web.Application([(r"/", Hello)]).listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(serve(args.port))
            return
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
