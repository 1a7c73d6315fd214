"""The SQLite store's checkpoints, on a thread of their own (:class:`Checkpointer`)."""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("gateway.store.sqlite")


class Checkpointer:
    """Copies the WAL back into the database file every second, on a thread of its own connection.

    A checkpoint is where SQLite fsyncs; keeping it off the loop keeps the loop off the disk.
    PASSIVE never blocks writers: it copies what it can and tries again next time.
    """

    INTERVAL = 1.0

    def __init__(self, path: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path,), name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, path: str) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(self.INTERVAL):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("sqlite checkpoint failed: %s", exc)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a short WAL behind
        except sqlite3.Error as exc:
            log.warning("sqlite checkpoint failed: %s", exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
