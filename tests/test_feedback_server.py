"""The A/B app over real HTTP (uvicorn in a subprocess, loopback only): access tokens, CSRF,
escaping, limits, rater isolation, rate limits, exports, bad input, and SIGKILL mid-rating."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from html.parser import HTMLParser

import httpx
import pytest
from feedback_server import TINY, Rater, Server, add_rater, csrf_of

pytestmark = pytest.mark.timeout(300)

INJECT = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("fb") / "feedback.sqlite"
    srv = Server(db, forced=f"I am fine {INJECT} thanks", messages_per_minute=6, max_message_chars=200,
                 max_turns=3)
    yield srv
    srv.stop()


class _Elements(HTMLParser):
    """Every element and attribute of a page, as a browser's parser would build them."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict]]:
    p = _Elements()
    p.feed(html)
    return p.tags


def test_no_token_never_sees_the_rating_ui(server):
    for path in ("/", "/c/0123", "/admin/export"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401 and "Sign in" in r.text and "rate-form" not in r.text
    r = httpx.get(server.url + "/", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and "unknown access token" in r.text
    r = httpx.get(server.url + "/", cookies={"hhhlab_token": "forged"})
    assert r.status_code == 401


def test_expired_token_is_refused(server):
    token = add_rater(server.db, "expired-rater", days=-1)
    r = httpx.get(server.url + "/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.text


def test_two_turn_comparison_escaping_and_storage(server):
    rater = Rater(server.url, add_rater(server.db, "alice"))
    rater.new_conversation()
    r = rater.send(f"hello {INJECT}")
    assert r.status_code == 200
    html = r.text
    # The injected markup is text: no script element or onerror attribute came from it, and the
    # page's only script is our own file (the CSP header forbids inline script as well).
    tags = _elements(html)
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{"src": "/static/app.js", "defer": None}]
    assert not any(t == "img" for t, _ in tags)
    assert not any(k.startswith("on") for _, a in tags for k in a)
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html  # user message and replies, escaped
    assert html.count("&lt;img src=x onerror=") == 3  # the message and both replies
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert rater.rate(2, comment=f"A was better {INJECT}").status_code == 200
    assert "&lt;script&gt;" in rater.page  # the chosen reply is now part of the transcript, still escaped
    assert rater.send("second turn").status_code == 200
    assert rater.rate(7).status_code == 200
    con = sqlite3.connect(server.db)
    rows = con.execute("SELECT rater, turn_index, rating, chosen, user_message, comment, system_a, system_b, "
                       "response_a, context FROM comparisons WHERE rater='alice' ORDER BY id").fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [(0, 2, "A"), (1, 7, "B")]
    assert rows[0][4] == f"hello {INJECT}" and rows[0][5] == f"A was better {INJECT}"
    assert rows[0][6] != rows[0][7]  # two different systems
    assert INJECT in rows[0][8]  # stored raw; escaping is the page's job
    assert '"role": "Human"' in rows[1][9] and "hello" in rows[1][9]  # turn 2 carries the conversation so far


def test_csrf_forged_replayed_and_cross_rater_forms(server):
    alice = Rater(server.url, add_rater(server.db, "carol"))
    alice.new_conversation()
    page = alice.page
    forged = alice.http.post(f"/c/{alice.conv}/message", data={"csrf": "x" + csrf_of(page, "message-form")[1:],
                                                               "turn": "0", "message": "hi"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    missing = alice.http.post(f"/c/{alice.conv}/message", data={"turn": "0", "message": "hi"})
    assert missing.status_code == 403
    assert alice.send("hi").status_code == 200
    rate_page = alice.page
    assert alice.rate(1).status_code == 200
    # Replaying the rating form stores nothing twice.
    replay = alice.http.post(f"/c/{alice.conv}/rate", data={"csrf": csrf_of(rate_page, "rate-form"),
                                                            "pending": re.search(r'name="pending" value="([^"]+)"',
                                                                                 rate_page).group(1),
                                                            "rating": "8"})
    assert replay.status_code == 409
    # A stale message form (turn 0 again) is refused.
    stale = alice.http.post(f"/c/{alice.conv}/message", data={"csrf": csrf_of(page, "message-form"), "turn": "0",
                                                              "message": "again"})
    assert stale.status_code == 409
    # Another rater can neither read nor post to carol's conversation, even with carol's form token.
    bob = Rater(server.url, add_rater(server.db, "bob"))
    assert bob.http.get(f"/c/{alice.conv}").status_code == 404
    r = bob.http.post(f"/c/{alice.conv}/message", data={"csrf": csrf_of(alice.page, "message-form"), "turn": "1",
                                                        "message": "intrude"})
    assert r.status_code == 403
    con = sqlite3.connect(server.db)
    assert con.execute("SELECT count(*), max(rating) FROM comparisons WHERE rater='carol'").fetchone() == (1, 1)


def test_bad_input_pages_and_limits(server):
    r = Rater(server.url, add_rater(server.db, "dave"))
    r.new_conversation()
    too_long = r.send("x" * 201)
    assert too_long.status_code == 413 and "201 characters" in too_long.text
    assert r.send("   ").status_code == 400
    assert r.send("ok").status_code == 200
    for bad in ("0", "9", "A", "4.5", ""):
        resp = r.http.post(f"/c/{r.conv}/rate", data={"csrf": csrf_of(r.page, "rate-form"), "pending": r.pending_id(),
                                                      "rating": bad})
        assert resp.status_code == 400 and "outside the scale" in resp.text
    long_comment = r.http.post(f"/c/{r.conv}/rate", data={"csrf": csrf_of(r.page, "rate-form"),
                                                          "pending": r.pending_id(), "rating": "3",
                                                          "comment": "c" * 2001})
    assert long_comment.status_code == 413
    assert r.rate(3).status_code == 200  # the pair survived the bad forms and is rated once
    # Conversation length limit (max_turns=3).
    for _ in range(2):
        assert r.send("more").status_code == 200 and r.rate(5).status_code == 200
    assert "reached 3 turns" in r.page
    assert httpx.get(server.url + "/healthz").text == "ok"  # still serving


def test_a_failing_generation_is_an_error_page_and_the_server_keeps_serving(server):
    r = Rater(server.url, add_rater(server.db, "heidi"))
    r.new_conversation()
    before = sqlite3.connect(server.db).execute("SELECT count(*) FROM pending").fetchone()[0]
    bad = r.send("RAISE-REQUEST please")
    assert bad.status_code == 400 and "exceeds the window" in bad.text
    crash = r.send("RAISE-CRASH please")
    assert crash.status_code == 500 and "the model crashed" in crash.text and "nothing was stored" in crash.text
    assert sqlite3.connect(server.db).execute("SELECT count(*) FROM pending").fetchone()[0] == before
    assert r.send("fine now").status_code == 200 and r.rate(4).status_code == 200


def test_rate_limit_per_rater(server):
    eve = Rater(server.url, add_rater(server.db, "eve"))
    codes = []
    for _ in range(8):  # limit: 6 messages a minute; each conversation takes one message here
        eve.new_conversation()
        codes.append(eve.send("hi").status_code)
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]
    # Another rater is not limited by eve's use.
    frank = Rater(server.url, add_rater(server.db, "frank"))
    frank.new_conversation()
    assert frank.send("hi").status_code == 200


def test_admin_export(server):
    plain = add_rater(server.db, "grace")
    rater = Rater(server.url, plain)  # at least one comparison exists, whatever the test order
    rater.new_conversation()
    assert rater.send("hi").status_code == 200 and rater.rate(6).status_code == 200
    admin = add_rater(server.db, "boss", admin=True)
    assert httpx.get(server.url + "/admin/export", headers={"Authorization": f"Bearer {plain}"}).status_code == 403
    r = httpx.get(server.url + "/admin/export", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200
    rows = [line for line in r.text.splitlines() if line]
    n = sqlite3.connect(server.db).execute("SELECT count(*) FROM comparisons").fetchone()[0]
    assert len(rows) == n > 0 and '"rating"' in rows[0]


def test_cli_errors_cleanly_on_bad_db_and_model(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from hhhlab.cli import app
    from hhhlab.errors import ModelLoadError

    # One real process: the CLI prints the error as one line, no traceback, exit status 2.
    bad_db = subprocess.run([sys.executable, "-m", "hhhlab", "serve", "--models", f"{TINY},seed=1,{TINY},seed=2",
                             "--conditions", "plain", "--db", "nosuchdriver://x/y"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert bad_db.returncode == 2 and "cannot open the feedback database" in _flat(bad_db.stderr)
    assert "Traceback" not in bad_db.stderr
    runner = CliRunner()
    bad_model = runner.invoke(app, ["serve", "--models", f"{TINY},{tmp_path}/missing", "--conditions", "plain",
                                    "--db", str(tmp_path / "f.sqlite")])
    assert isinstance(bad_model.exception, ModelLoadError) and "missing" in str(bad_model.exception)
    token = runner.invoke(app, ["serve", "--add-rater", "zoe", "--db", str(tmp_path / "f.sqlite")])
    assert token.exit_code == 0
    from hhhlab.feedback.db import FeedbackStore

    rater, _ = FeedbackStore(tmp_path / "f.sqlite").rater_for_token(token.stdout.strip().splitlines()[-1])
    assert rater is not None and rater.name == "zoe"


def test_sigkill_mid_rating_keeps_every_acknowledged_comparison(tmp_path):
    db = tmp_path / "kill.sqlite"
    srv = Server(db, forced="a reply", env={"HHHLAB_FEEDBACK_COMMIT_DELAY_S": "0.5"}, messages_per_minute=0,
                 ratings_per_minute=0)
    try:
        rater = Rater(srv.url, add_rater(db, "kim"))
        acked: list[str] = []
        for i in range(4):
            rater.new_conversation()
            for turn in range(2):
                assert rater.send(f"m{i}.{turn}").status_code == 200
                pid = rater.pending_id()
                assert rater.rate(1 + (i + turn) % 8).status_code == 200
                acked.append(pid)
        # One more rating, killed while its transaction is open (inside the 0.5 s pause).
        assert rater.send("doomed").status_code == 200
        doomed = rater.pending_id()
        result: dict = {}
        t = threading.Thread(target=lambda: result.update(r=_try(rater.rate, 4)))
        t.start()
        time.sleep(0.25)
        srv.kill()
        t.join(30)
        reply = result.get("r")
        assert not (isinstance(reply, httpx.Response) and reply.status_code == 200)  # never acknowledged
    finally:
        srv.stop()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {u for (u,) in con.execute("SELECT uid FROM comparisons")}
    assert set(acked) <= stored and doomed not in stored
    cols = [c[1] for c in con.execute("PRAGMA table_info(comparisons)")]
    nulls = con.execute("SELECT count(*) FROM comparisons WHERE " + " OR ".join(f"{c} IS NULL" for c in cols)).fetchone()
    assert nulls == (0,)
    # The killed transaction left no trace elsewhere either: the pair is still pending, and every
    # conversation has exactly two turns per stored comparison.
    assert con.execute("SELECT count(*) FROM pending WHERE id=?", (doomed,)).fetchone() == (1,)
    for conv, turns in con.execute("SELECT id, turns FROM conversations"):
        n = con.execute("SELECT count(*) FROM comparisons WHERE conversation_id=?", (conv,)).fetchone()[0]
        assert turns.count('"role": "Human"') == n
    # A restarted server serves the same data and the pending pair can still be rated.
    srv = Server(db, forced="a reply")
    try:
        again = Rater(srv.url, add_rater(db, "kim"))
        again.conv = con.execute("SELECT conversation_id FROM pending WHERE id=?", (doomed,)).fetchone()[0]
        again.page = again.http.get(f"/c/{again.conv}").text
        assert again.rate(4).status_code == 200
    finally:
        srv.stop()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM comparisons").fetchone() == (len(acked) + 1,)


def _try(fn, *args):
    try:
        return fn(*args)
    except httpx.HTTPError as exc:
        return {"error": str(exc)}


def _flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())
