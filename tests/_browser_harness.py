"""Headless Chromium for the report test: installed with apt-get when missing (as the Slurm harness installs
Slurm), driven over the DevTools protocol (websocket-client) to load a page, evaluate JavaScript in it and
take a screenshot.

Chromium runs with a fresh ``--user-data-dir`` and with background networking, sync, component updates and
QUIC off, so opening a local report page makes no network request of its own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

PACKAGES = ("chromium",)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def install() -> str:
    """The Chromium binary, apt-get installing Debian's ``chromium`` first if there is none."""
    found = chromium_path()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError("chromium is missing and cannot be installed here (needs root and apt-get): apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True, text=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    found = chromium_path()
    if not found:
        raise RuntimeError("apt-get installed chromium but no chromium binary is on PATH")
    return found


class Browser:
    """One headless Chromium with a fresh profile; `open` a URL, `evaluate` JavaScript, `screenshot`."""

    def __init__(self, profile_dir: Path, width: int = 1400, height: int = 1000) -> None:
        import websocket  # websocket-client

        self._proc = subprocess.Popen(
            [install(), *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        port_file = Path(profile_dir) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
                self.close()
                raise RuntimeError(f"chromium did not start: {err[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        target = self._page_target(port)
        self._ws = websocket.create_connection(target, timeout=60, suppress_origin=True)
        self._id = 0
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.call("Page.enable")
        self.call("Network.enable")

    @staticmethod
    def _page_target(port: int) -> str:
        from urllib.request import urlopen

        deadline = time.monotonic() + 30
        while True:
            try:
                with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromium exposes no page target")
            time.sleep(0.2)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events seen meanwhile are recorded)."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._record(msg)

    def _record(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Network.loadingFailed":
            self.failed.append(msg["params"].get("errorText", "?"))

    def open(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait for the load event (all images of the page loaded or failed)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            self._record(msg)
            if msg.get("method") == "Page.loadEventFired":
                return
        raise TimeoutError(f"{url}: no load event within {timeout} s")

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, condition: str, timeout: float = 120) -> bool:
        """Wait until the JavaScript expression ``condition`` is true in the page (checked at every animation
        frame: the wait ends with the event, not after a fixed time); False if ``timeout`` s pass first."""
        return self.evaluate(
            "new Promise(resolve => { const end = performance.now() + %d;"
            " const check = () => { if (%s) resolve(true); else if (performance.now() > end) resolve(false);"
            " else requestAnimationFrame(check); }; check(); })" % (int(timeout * 1000), condition)
        )

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """PNG screenshot of the page (the whole page height with ``full_page``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
