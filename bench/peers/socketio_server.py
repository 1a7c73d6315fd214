"""python-socketio on aiohttp, in-memory broadcast: the peer bench/fanout.py measures our event fan-out against.

``python bench/peers/socketio_server.py PORT [--uvloop]`` serves Socket.IO at ``/socket.io/`` and ``POST /write``
(``{"account", "name", "seq"}``), which emits a ``receipt`` event shaped like ours to the room
``account``; a client joins a room with ``emit("join", account)`` and is answered ``joined``.
(``pip install "python-socketio==5.18.*" aiohttp``.)  ``--uvloop`` runs it on uvloop rather than
asyncio's own loop (aiohttp's default).
"""

from __future__ import annotations

import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
app = web.Application()
sio.attach(app)


@sio.on("join")
async def join(sid: str, account: str) -> None:
    await sio.enter_room(sid, account)
    await sio.emit("joined", account, to=sid)


async def write(request: web.Request) -> web.Response:
    body = await request.json()
    seq = body["seq"]
    await sio.emit("receipt", {"type": "receipt", "id": f"{seq:024x}", "name": body["name"], "thread": f"{seq:024x}",
                               "labels": ["inbox"], "cursor": str(seq)}, room=body["account"])
    return web.json_response({"success": True})


app.router.add_post("/write", write)

if __name__ == "__main__":
    if "--uvloop" in sys.argv[2:]:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
