"""A minimal Chrome DevTools Protocol client on the standard library alone (no selenium, no websocket package):
start headless Chromium, open a page, evaluate JavaScript in it, wait for its load event. For the tests and the
benchmark of `charrnn inspect --html`.

    with Browser() as b:                       # raises Unavailable when there is no Chromium
        b.open("file:///tmp/page.html#unit=0:3")
        b.js("document.body.dataset.unit")     # -> "0:3"
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class Unavailable(Exception):
    """No Chromium here, or it would not start: the reason, for pytest.skip."""


def find() -> str | None:
    return os.environ.get("CHARRNN_CHROMIUM") or next(filter(None, map(shutil.which, NAMES)), None)


class _Socket:
    """One WebSocket connection (RFC 6455): masked text frames out, whole messages in."""

    def __init__(self, url: str, timeout: float):
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Unavailable("the DevTools socket closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise Unavailable(f"the DevTools socket refused the upgrade: {head[:80]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 \
            else bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(b"\x81" + size + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the DevTools socket closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 8:
                raise ConnectionError("the DevTools socket closed")
            if b0 & 0x0F in (0, 1, 2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, timeout: float = 60.0, width: int = 1200, height: int = 900):
        self.timeout, self.size = timeout, (width, height)
        self.proc, self.ws, self.next_id, self.events = None, None, 0, []

    def __enter__(self) -> "Browser":
        exe = find()
        if exe is None:
            raise Unavailable("Chromium is not installed (apt-get install chromium, or set CHARRNN_CHROMIUM)")
        self.profile = tempfile.mkdtemp(prefix="charrnn-chromium-")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            port = self._port()
            deadline = time.monotonic() + self.timeout
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not pages:
                raise Unavailable("Chromium started but opened no page")
            self.ws = _Socket(pages[0]["webSocketDebuggerUrl"], self.timeout)
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _port(self) -> int:
        path, deadline = os.path.join(self.profile, "DevToolsActivePort"), time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"Chromium exited at start (code {self.proc.returncode})")
            try:
                with open(path) as f:
                    return int(f.readline())
            except (OSError, ValueError):
                time.sleep(0.05)
        raise Unavailable("Chromium did not open its DevTools port in time")

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept for `wait`)."""
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait(self, event: str) -> dict:
        """The next event of that name (one already received counts)."""
        for i, message in enumerate(self.events):
            if message["method"] == event:
                return self.events.pop(i)
        while True:
            message = json.loads(self.ws.receive())
            if message.get("method") == event:
                return message
            if "method" in message:
                self.events.append(message)

    def open(self, url: str) -> float:
        """Load url afresh and wait for its load event -> seconds from the request to the load event. (A URL that
        differs from the current one only in its fragment would not load again, so about:blank comes between.)"""
        if getattr(self, "url", "").split("#")[0] == url.split("#")[0]:
            self.events.clear()
            self.call("Page.navigate", url="about:blank")
            self.wait("Page.loadEventFired")
        self.url = url
        self.events.clear()
        start = time.perf_counter()
        self.call("Page.navigate", url=url)
        self.wait("Page.loadEventFired")
        return time.perf_counter() - start

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-able values come back as Python values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """The uncaught JavaScript exceptions the page has thrown since it was opened (as far as received)."""
        return [e["params"]["exceptionDetails"].get("exception", {}).get("description", "?")
                for e in self.events if e["method"] == "Runtime.exceptionThrown"]

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
