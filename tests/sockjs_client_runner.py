"""Running the real sockjs-client (tests/js) against the gateway, and judging what it printed.

``scenario.js`` (Node) and ``browser.js`` (headless Chromium) both run
``scenario-core.js``: one JSON line per step, then a result line.  They run as
asyncio subprocesses, or, the browser scripts, in the Node process of a
:class:`SharedChromium` (waited for on a thread), so the server, on the test's
event loop, keeps serving.  Their dependencies come from ``npm ci --prefix tests/js`` (part of the test
command in README.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from tests.conftest import PASSWORD, Api

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
STEPS = ["open", "register", "login", "send email", "list emails", "me",
         "subscribe", "event", "unsubscribe", "bad message", "still usable", "close"]
#: The scripts' own limit; a test's is longer so the script reports which step hung.
SCENARIO_TIMEOUT = 20


def installed(package: str) -> bool:
    return (JS_DIR / "node_modules" / package / "package.json").is_file()


async def run_script(script: str, *args: str, chromium: SharedChromium | None = None,
                     **env: str) -> tuple[int | None, list[dict[str, Any]], str]:
    """Run ``tests/js/<script>`` to the end: its exit status, its JSON lines and its stderr; in
    ``chromium``'s Node process when given (browser scripts), else in a Node of its own."""
    env = {"SCENARIO_TIMEOUT_MS": str(SCENARIO_TIMEOUT * 1000), **env}
    if chromium is not None:
        code, out, err = await asyncio.get_running_loop().run_in_executor(None, chromium.run, script, args, env)
    else:
        code, out, err = await _run_node(script, args, env)
    try:
        lines = [json.loads(line) for line in out.splitlines()]
    except ValueError:
        raise AssertionError(f"{script} printed something that is not a JSON line\nstdout:\n{out}\n"
                             f"stderr:\n{err}") from None
    return code, lines, err


async def _run_node(script: str, args: tuple[str, ...], env: dict[str, str]) -> tuple[int | None, str, str]:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS_DIR / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCENARIO_TIMEOUT + 15)
    except asyncio.TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(f"{script} outlived its own timeout\nstdout:\n{stdout.decode()}\n"
                             f"stderr:\n{stderr.decode()}") from None
    return process.returncode, stdout.decode(), stderr.decode()


class SharedChromium:
    """``tests/js/chromium-server.js``: one headless Chromium, and the browser scripts run in its Node
    process in turn (:meth:`run`), each page in a context of its own; started on first use, and again
    if it ended."""

    def __init__(self, chromium: str) -> None:
        self.chromium = chromium
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # its own stderr, for when it fails
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        assert NODE is not None
        process = subprocess.Popen([NODE, str(JS_DIR / "chromium-server.js")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=self.log,
                                   env={**os.environ, "CHROMIUM": self.chromium})
        if not self._answer(process, SCENARIO_TIMEOUT):  # its endpoint: the browser is up
            raise AssertionError(f"chromium-server.js did not start (exit code {process.returncode}): {self._log()}")
        return process

    def _answer(self, process: subprocess.Popen[bytes], within: float) -> bytes:
        """Its next line, or b"" if it ended or took longer than ``within`` (then it is killed)."""
        assert process.stdout is not None
        bound = threading.Timer(within, process.kill)
        bound.start()
        try:
            line = process.stdout.readline()
        finally:
            bound.cancel()
        if not line:
            process.kill()
            process.wait()
        return line

    def _log(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def run(self, script: str, args: tuple[str, ...], env: dict[str, str]) -> tuple[int | None, str, str]:
        """Run ``tests/js/<script>`` (blocking): its exit status, stdout and stderr."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.process = self._start()
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"script": script, "args": args, "env": env}).encode() + b"\n")
            self.process.stdin.flush()
            line = self._answer(self.process, SCENARIO_TIMEOUT + 15)
            if not line:
                raise AssertionError(f"{script} outlived its own timeout, or chromium-server.js ended: {self._log()}")
            answer = json.loads(line)
            return answer["code"], answer["stdout"], answer["stderr"]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # it closes the browser and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def check_done_over_tunnel(api: Api, username: str, result: dict[str, Any]) -> None:
    """What the scenario did over the tunnel is there over plain HTTP: its account, and the email it sent."""
    login = await api.post("/tokens", {"username": username, "password": PASSWORD})
    assert login.status == 201
    emails = (await api.get("/emails?label=sent", token=login.json["token"]["value"])).json["emails"]
    assert sorted((e["id"], e["subject"]) for e in emails if e["to"] == ["bob@x.org"]) == [(result["email"], "hi")]


def check_succeeded(transport: str, code: int | None, lines: list[dict[str, Any]], err: str) -> dict[str, Any]:
    """The scenario passed every step on the forced transport; its result line."""
    assert lines and code == 0, f"the scenario exited with {code}: {err.strip() or lines}"
    *steps, result = lines
    assert result["ok"] is True and result["transport"] == transport, result
    assert [s["step"] for s in steps] == STEPS
    assert steps[0]["transport"] == transport  # what sockjs-client says it used (`sock.transport`)
    return result
