"""The inbound "accepted" log line's CPU: the standard setup (``basicConfig``'s formatter, default
records) against ``gateway serve``'s (:func:`gateway.app.cli.cheap_records` and its
``TextFormatter``), interleaved in one process, best of 9 loops of 5,000 lines, thread CPU time,
written (and flushed, as the server's handler does) to a file.

    python bench/log_line.py                 # to a temporary file
    python bench/log_line.py /tmp/lines.txt
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

# this folder's events.py would stand in for the project's events package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from gateway.app.cli import TEXT_FORMAT, TextFormatter  # noqa: E402


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkstemp(suffix=".log")[1]
    with open(path, "w") as stream:
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT, stream=stream)
        handler = logging.getLogger().handlers[0]
        log = logging.getLogger("gateway.smtp")
        srcfile = logging._srcfile  # type: ignore[attr-defined]

        def standard() -> None:
            logging._srcfile = srcfile  # type: ignore[attr-defined]
            logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))

        def served() -> None:
            logging._srcfile = None  # type: ignore[attr-defined]
            logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
            handler.setFormatter(TextFormatter(TEXT_FORMAT))

        best = {"standard": float("inf"), "gateway serve": float("inf")}
        for _ in range(9):
            for name, setup in (("standard", standard), ("gateway serve", served)):
                setup()
                started = time.thread_time()
                for _ in range(5000):
                    log.info("accepted a %d-byte message from %s for %d local recipient(s)",
                             312, "sender@example.com", 10)
                best[name] = min(best[name], (time.thread_time() - started) / 5000 * 1e6)
    print(", ".join(f"{name} {us:.2f} us/line" for name, us in best.items()))


if __name__ == "__main__":
    main()
