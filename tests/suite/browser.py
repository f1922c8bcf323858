"""A headless Chromium driven over the DevTools protocol, for the browser tests (the website, and JupyterLab): load a
page, collect every console error, and evaluate JavaScript in it. `chromium()` finds Debian's Chromium, installing it
where it can, and skips the test, saying why, where it cannot.

Chromium speaks the protocol over a pipe (`--remote-debugging-pipe`: it reads commands from its file descriptor 3 and
writes replies and events to 4, each message JSON ended by a NUL byte), so the test needs no websocket client.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
)  # fmt: skip


def find_chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def chromium() -> str:
    """Debian's Chromium, installed if missing (CI runs as root); the test is skipped, saying why, if it cannot be."""
    if found := find_chromium():
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("no chromium, and no root apt-get to install it: `apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
    return find_chromium() or pytest.skip("`apt-get install -y chromium` did not install chromium")


class Browser:
    """One Chromium with one page. `open(url)` loads it; `evaluate(js)` returns the value of an expression (awaited
    if it is a promise); `errors` lists every console error, uncaught exception and failed load seen so far."""

    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()

        def as_fds_3_and_4() -> None:
            """In the child: the two pipe ends where Chromium looks for them. dup2 makes them inheritable; every other
            descriptor of ours is close-on-exec (as os.pipe and os.dup make them), so only these two reach Chromium."""
            read, write = os.dup(commands_read), os.dup(replies_write)  # never overwritten by the first dup2 below
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=as_fds_3_and_4, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_read)
        os.close(replies_write)
        self.buffer, self.next_id, self.session = b"", 0, None
        self.errors: list[str] = []
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")

    def read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def record(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        self.events.append(event)
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(arg.get("value", arg)) for arg in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")

    def send(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self.read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.record(reply)

    def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(event.get("method") == method for event in self.events):
            self.record(self.read_message(deadline))

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_until(browser: Browser, condition: str, timeout: float = 30.0) -> bool:
    """Whether the JavaScript `condition` became true within `timeout` seconds (polled every 0.25 s)."""
    deadline = time.monotonic() + timeout
    while not browser.evaluate(condition):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True
