"""Summarise a py-spy raw profile (``py-spy record -f raw``): the functions with the most samples.

Prints each function's inclusive share (samples with it anywhere on the stack)
and self share (samples where it is the innermost frame), largest first::

    python bench/profile_summary.py echo.txt [--top 40] [--match tornado]

With ``--groups tunnel`` it prints instead how the samples of a tunnel/HTTP
API profile (``bench/tunnel.py --server-prefix 'py-spy record ...'``) fall
into groups of work: each sample goes to the group of the innermost frame on
its stack that names one (see :data:`GROUPS`)::

    python bench/profile_summary.py tunnel.txt --groups tunnel
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

#: py-spy's raw frames: "function (file.py:line)"; the line is dropped so one function is one row.
FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


#: Groups of work, each named by parts of function rows (as :func:`name` writes them); a sample goes to the
#: group of the innermost frame on its stack that one names.
GROUPS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "tunnel": [
        ("access log and request metrics", ("observed.<locals>.log_function (app/web.py)", "log_request (sockjs/access_log.py)")),
        ("decoding stored rows", ("load (store/sqlite_rows.py)",)),
        ("the store's SQL (count, find, get)", ("SQLiteStore.find", "SQLiteStore.count", "SQLiteStore._read")),
        ("auth", ("APIHandler.authenticate", "Tokens.verify")),
        ("shaping", ("public_email (mail/documents.py)", "public (store/documents.py)")),
        ("encoding the body", ("dumps (gateway/jsontext.py)",)),
        ("tunnel: responses (frame strings, SockJS flush, websocket writes)",
         ("GatewayConnection.respond", "Session.flush", "send_pack", "FrameProtocol.send")),
        ("Tornado: a handler's finish and flush", ("RequestHandler.finish", "RequestHandler.flush")),
        ("Tornado: a handler's __init__ and clear", ("RequestHandler.__init__",)),
        ("the handlers' other work (Tornado's _execute, prepare, arguments)",
         ("RequestHandler._execute", "_HandlerDelegate")),
        ("tunnel: building and routing the request", ("Tunnel.start", "HTTPServerRequest.__init__")),
        ("tunnel: the message parse", ("parse (ws/messages.py)",)),
        ("tunnel: websocket frames and dispatch", ("FrameProtocol", "GatewayConnection", "Session.on_messages")),
        ("HTTP: parsing, connections, writes", ("HTTP1Connection", "HTTP1ServerConnection", "IOStream")),
        ("start-up and imports", ("_find_and_load", "<module>")),
    ],
}


def group_of(frames: list[str], groups: list[tuple[str, tuple[str, ...]]]) -> str:
    """The group of the innermost frame that names one (see :data:`GROUPS`), else "the rest"."""
    for frame in reversed(frames):
        for group, names in groups:
            if any(n in frame for n in names):
                return group
    return "the rest"


def name(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    function, path = match.groups()
    parts = Path(path).parts
    return f"{function} ({'/'.join(parts[-2:])})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions whose row contains this text")
    parser.add_argument("--groups", choices=sorted(GROUPS), help="shares by groups of work instead")
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    grouped: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        total += samples
        for function in set(frames):
            inclusive[function] += samples
        if frames:
            own[frames[-1]] += samples
        if args.groups:
            grouped[group_of(frames, GROUPS[args.groups])] += samples
    print(f"{total} samples")
    if args.groups:
        for group, samples in grouped.most_common():
            print(f"{samples / total:7.1%}  {group}")
        return 0
    print(f"{'incl %':>7} {'self %':>7}  function")
    for function, samples in inclusive.most_common():
        if args.match not in function:
            continue
        print(f"{samples / total:7.1%} {own[function] / total:7.1%}  {function}")
        args.top -= 1
        if args.top <= 0:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
