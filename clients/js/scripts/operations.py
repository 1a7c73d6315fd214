"""Writes src/operations.js from docs/openapi.yaml: one entry per operation the API has.

Run from anywhere: ``python clients/js/scripts/operations.py``.  The test suite
regenerates it and fails when the committed file differs, so the client cannot
drift from the spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE.parents[2] / "docs" / "openapi.yaml"
OUT = HERE.parent / "src" / "operations.js"
METHODS = ("get", "put", "post", "delete", "patch")


def operations(spec: dict) -> dict[str, dict]:
    """operationId -> method, path, whether it needs the token, takes a body, and its header parameters."""
    found: dict[str, dict] = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [p for p in item.get("parameters", []) + op.get("parameters", []) if "in" in p]
            found[op["operationId"]] = {
                "method": method.upper(),
                "path": path,
                "auth": op.get("security", spec.get("security")) != [],
                "body": "requestBody" in op,
                "headers": [p["name"] for p in params if p["in"] == "header"],
            }
    return dict(sorted(found.items()))


def render(spec: dict) -> str:
    lines = ["// Generated from docs/openapi.yaml by scripts/operations.py: do not edit.",
             "// operationId -> how to call it (the typed methods of client.api are made from this).",
             "export const operations = {"]
    for name, op in operations(spec).items():
        lines.append(f"  {name}: {json.dumps(op, separators=(', ', ': '))},")
    lines.append("};")
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render(yaml.safe_load(SPEC.read_text()))
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
