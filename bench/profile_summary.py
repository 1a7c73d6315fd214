"""Summarise a py-spy raw profile (``py-spy record -f raw``): the functions with the most samples.

Prints each function's inclusive share (samples with it anywhere on the stack)
and self share (samples where it is the innermost frame), largest first::

    python bench/profile_summary.py echo.txt [--top 40] [--match tornado]
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

#: py-spy's raw frames: "function (file.py:line)"; the line is dropped so one function is one row.
FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


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
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
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
    print(f"{total} samples")
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
