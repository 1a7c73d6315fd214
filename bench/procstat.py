"""What the benchmarks read from ``/proc``: a process's CPU time, the machine's, and finding the gateway.

Linux only.  The benchmark scripts import it as a sibling module (they run as
``python bench/NAME.py``, which puts ``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far (every thread); zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (``/proc/stat``, all processes)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks  # guest time is already in user
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def gateway_pid(root: int) -> int:
    """The pid of ``python -m gateway serve`` started as ``root`` or (under a wrapper such as py-spy) below it."""
    pending = [root]
    while pending:
        pid = pending.pop(0)
        if argv(pid)[1:4] == ["-m", "gateway", "serve"]:
            return pid
        pending += children(pid)
    return root


def process_rss(pid: int) -> int:
    """Resident set size of a process in bytes (``VmRSS``); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
