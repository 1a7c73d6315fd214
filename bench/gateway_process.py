"""The gateway process a benchmark measures: started, found, timed and stopped the same way by every script.

Imported as a sibling module (the scripts run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from procstat import gateway_pid, process_cpu

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (free when this returns)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank quantile ``q`` of sorted values (0 when there are none)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


class GatewayProcess:
    """``gateway serve`` as a child (under ``prefix``, e.g. a profiler) in ``workdir``, logging to
    ``workdir/server.log``.  Inherited ``GATEWAY_*`` variables are dropped: ``env`` says it all."""

    def __init__(self, workdir: Path, env: dict[str, str], prefix: Sequence[str] = (), source: Path = REPO) -> None:
        self.log_path = workdir / "server.log"
        full_env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
        full_env.update({
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_STORE": f"sqlite:{workdir / 'gateway.db'}",
            "GATEWAY_ARGON2_MEMORY": "1024",  # setup logins stay cheap
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")])),
        })
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "gateway", "serve"],
                cwd=workdir, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
        self.pid = self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, ready: Callable[[], T | None], timeout: float) -> T:
        """Poll ``ready()`` until it gives something (the gateway writes no other signal); then the
        gateway's own pid is known too.  RuntimeError with the log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ready()
            if found is not None:
                self.pid = gateway_pid(self.process.pid)
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the gateway did not start; its log:\n{self.log_text()}")

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU time of the gateway so far, every thread, from ``/proc``."""
        return process_cpu(self.pid)

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)  # the gateway itself, so a profiling wrapper writes its output
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
