"""Start the A/B app in a subprocess on a free loopback port (for the feedback tests and the load
benchmark), and a small HTTP client that signs in and walks the forms like a browser would.

``forced`` replaces every model reply with a fixed text (the escaping tests need a model that
says ``<script>``), and makes a message containing RAISE-REQUEST or RAISE-CRASH fail the way a
model can; otherwise the real tiny models generate."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
TWO_TINY = f"{TINY},seed=1,{TINY},seed=2"

LAUNCHER = r"""
import json, sys
spec = json.loads(sys.argv[1])
import os, torch
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
import uvicorn
from hhhlab.feedback.app import build_app
from hhhlab.feedback.config import ServeConfig
app = build_app(ServeConfig(**spec["config"]))
if spec.get("forced") is not None:
    from hhhlab.errors import RequestError
    forced = spec["forced"]
    def generate(system, ctx, sampling, seed):
        if "RAISE-REQUEST" in ctx:  # what a model raises for a conversation past its window
            raise RequestError("the conversation exceeds the window (test)")
        if "RAISE-CRASH" in ctx:
            raise RuntimeError("the model crashed (test)")
        return forced
    app.state.pool.generator = generate
print("READY", flush=True)
uvicorn.run(app, host="127.0.0.1", port=spec["config"]["port"], log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: Path, *, models: str = TWO_TINY, conditions: str = "plain", forced: str | None = None,
                 env: dict[str, str] | None = None, threads: int = 1, ready_timeout: float = 180.0, **config):
        self.port = free_port()
        self.db = db
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {"models": models, "conditions": conditions, "db": str(db), "port": self.port, "max_new_tokens": 12,
               **config}
        full_env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps({"config": cfg, "forced": forced})],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True, text=True)
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).text == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no rollback."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def add_rater(db: Path, name: str, admin: bool = False, days: float | None = None) -> str:
    from hhhlab.feedback.db import FeedbackStore

    return FeedbackStore(db).add_rater(name, admin=admin, days=days)


def csrf_of(html: str, form_id: str | None = None, action: str | None = None) -> str:
    """The CSRF token of one form on a page (found by the form's id or action)."""
    if form_id:
        m = re.search(rf'id="{form_id}">\s*<input type="hidden" name="csrf" value="([^"]+)"', html)
    else:
        m = re.search(rf'action="{re.escape(action or "")}"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"',
                      html)
    assert m, f"no csrf token for {form_id or action} in page"
    return m.group(1)


class Rater:
    """A scripted rater over HTTP (cookies, CSRF, redirects), one conversation at a time."""

    def __init__(self, base: str, token: str, timeout: float = 120.0):
        import httpx

        self.http = httpx.Client(base_url=base, timeout=timeout, follow_redirects=True)
        page = self.http.get("/login").text
        r = self.http.post("/login", data={"csrf": csrf_of(page, action="/login"), "token": token})
        assert r.status_code == 200 and "Your conversations" in r.text, r.text[:500]
        self.conv = ""
        self.page = r.text

    def new_conversation(self) -> str:
        home = self.http.get("/").text
        r = self.http.post("/conversations", data={"csrf": csrf_of(home, action="/conversations")})
        assert r.status_code == 200, r.text[:300]
        self.conv, self.page = str(r.url).rsplit("/", 1)[1], r.text
        return self.conv

    def send(self, message: str):
        turn = re.search(r'name="turn" value="(\d+)"', self.page)
        assert turn, "no message form on the page"
        r = self.http.post(f"/c/{self.conv}/message", data={"csrf": csrf_of(self.page, "message-form"),
                                                            "turn": turn.group(1), "message": message})
        if r.status_code == 200:
            self.page = r.text
        return r

    def pending_id(self) -> str:
        m = re.search(r'name="pending" value="([^"]+)"', self.page)
        assert m, "no pending pair on the page"
        return m.group(1)

    def rate(self, rating: int, comment: str = ""):
        data = {"csrf": csrf_of(self.page, "rate-form"), "pending": self.pending_id(), "rating": str(rating),
                "comment": comment}
        r = self.http.post(f"/c/{self.conv}/rate", data=data)
        if r.status_code == 200:
            self.page = r.text
        return r
