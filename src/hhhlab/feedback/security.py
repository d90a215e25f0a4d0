"""Access tokens, CSRF tokens and per-rater rate limits for the A/B app.

* **Access**: each rater has a token (``hhhlab serve --add-rater NAME`` prints it; the database
  keeps only its sha256). A browser signs in once on ``/login``; the token then rides in an
  HttpOnly, SameSite=Strict cookie. Scripts send ``Authorization: Bearer TOKEN``. Exports need a
  rater with ``is_admin`` (``--add-admin NAME``).
* **CSRF**: every form carries a token signed with the server's secret (itsdangerous) that names
  the rater, the form's purpose and its object (the conversation, the pending pair), and expires.
  A token from another rater, another form or another pair is refused; a replayed rating form is
  also refused by the store (its pending pair is gone).
* **Rate limits**: a sliding window per rater and action (messages cost a generation).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "hhhlab_token"
CSRF_MAX_AGE_S = 24 * 3600


class CsrfError(Exception):
    pass


class Csrf:
    def __init__(self, secret: bytes):
        self._s = URLSafeTimedSerializer(secret, salt="hhhlab-feedback-csrf")

    def make(self, subject: str, purpose: str, obj: str = "") -> str:
        return self._s.dumps([subject, purpose, obj])

    def check(self, token: str | None, subject: str, purpose: str, obj: str = "") -> None:
        if not token:
            raise CsrfError("the form has no CSRF token (forged or stale form): reload the page")
        try:
            data = self._s.loads(token, max_age=CSRF_MAX_AGE_S)
        except SignatureExpired:
            raise CsrfError("the form expired: reload the page") from None
        except BadSignature:
            raise CsrfError("the form's CSRF token is invalid (forged form)") from None
        if data != [subject, purpose, obj]:
            raise CsrfError("the form's CSRF token belongs to another form or rater: reload the page")


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key (a sliding window)."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        """``(allowed, seconds until the next event would be allowed)``; records allowed events."""
        if self.limit <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            q = self._events[key]
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False, q[0] + self.window_s - now
            q.append(now)
            return True, 0.0
