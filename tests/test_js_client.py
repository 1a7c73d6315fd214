"""The JavaScript client library (clients/js): its own tests against real gateways, its types, and
that what it generates from docs/openapi.yaml is current.

The Node tests (``clients/js/test/*.test.js``) start ``gateway serve`` processes of this Python
(``GATEWAY_PYTHON``), mail them over SMTP and restart them; they need Node and
``npm ci --prefix clients/js`` and skip, saying why, without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "js"
NODE = shutil.which("node")
BIN = CLIENT / "node_modules" / ".bin"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: the JavaScript client's tests run in Node"),
    pytest.mark.skipif(not (CLIENT / "node_modules" / "sockjs-client").is_dir(),
                       reason="clients/js/node_modules is missing: run `npm ci --prefix clients/js`"),
]


def run(*command: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=CLIENT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def test_the_library_against_real_gateways() -> None:
    assert NODE is not None
    result = run(NODE, "--experimental-websocket", "--test", "--test-reporter=spec", "test/",
                 GATEWAY_PYTHON=sys.executable)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "ℹ fail 0" in result.stdout


def test_the_types_compile() -> None:
    # incremental: tsc checks again only what changed since its last run here (a full check costs ~4 s
    # of CPU); its record of that run is under node_modules/, so a fresh `npm ci` starts over
    result = run(str(BIN / "tsc"), "-p", "test/tsconfig.json", "--incremental",
                 "--tsBuildInfoFile", str(CLIENT / "node_modules" / ".cache" / "types.tsbuildinfo"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_what_is_generated_from_the_spec_is_current(tmp_path: Path) -> None:
    operations = run(sys.executable, "scripts/operations.py", "--check")
    assert operations.returncode == 0, "src/operations.js is stale: run `npm run generate` in clients/js"
    fresh = tmp_path / "api.d.ts"
    result = run(str(BIN / "openapi-typescript"), "../../docs/openapi.yaml", "-o", str(fresh))
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == (CLIENT / "src" / "api.d.ts").read_text(), \
        "src/api.d.ts is stale: run `npm run generate` (or `npm ci`) in clients/js"
