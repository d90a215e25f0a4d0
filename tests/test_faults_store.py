"""The results store under SIGKILL (issue 6, item 3): a writer killed at random points — inside
single-item writes and inside batched writes — leaves an intact SQLite index, and resuming
(skipping stored keys) ends with every item exactly once, with its right value."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

N = 300
WRITER = """
import sys, time
from hhhlab.store import ResultsStore
root, n = sys.argv[1], int(sys.argv[2])
run = ResultsStore(root).create_run("faults", {"n": n}, run_id="faults-run")
done = run.items()
todo = [i for i in range(n) if f"item{i:04d}" not in done]
print("start", len(done), flush=True)
while todo:
    time.sleep(0.01)  # ~2 s in all: every kill (<= 0.3 s after start) lands mid-run, even when idle
    if todo[0] % 3:  # mix single writes and batches of up to 17 (the eval runner's two patterns)
        run.put_item(f"item{todo[0]:04d}", {"i": todo[0], "sq": todo[0] ** 2})
        todo = todo[1:]
    else:
        batch, todo = todo[:17], todo[17:]
        run.put_items({f"item{i:04d}": {"i": i, "sq": i ** 2} for i in batch})
    print("w", flush=True)  # one line per committed write: the test paces its kills by these
run.finish({"n": n})
"""


def _items(root: Path) -> dict[str, str]:
    db = root / "runs.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT key, value FROM items"))
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _writer(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(N)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_store_writer_killed_at_random_points_keeps_every_item_exactly_once(tmp_path, seed):
    rng = random.Random(seed)
    root = tmp_path / "store"
    kills = []
    for _ in range(6):
        proc = _writer(root)
        assert proc.stdout.readline().startswith(b"start")  # imported and opened: now writing
        # Kill after a random number of committed writes, then a random fraction of one write's
        # time: every kill lands mid-run (between writes or inside one) however loaded the machine
        # is — a wall-clock delay alone let a starved parent miss the whole run.
        for _ in range(rng.randint(1, 6)):
            proc.stdout.readline()
        time.sleep(rng.uniform(0, 0.012))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kills.append(len(_items(root)))
    proc = _writer(root)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert any(0 < k < N for k in kills), kills

    con = sqlite3.connect(root / "runs.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT run_id, status FROM runs").fetchall() == [("faults-run", "finished")]
        rows = con.execute("SELECT key, value FROM items").fetchall()
    finally:
        con.close()
    assert len(rows) == N and sorted(k for k, _ in rows) == [f"item{i:04d}" for i in range(N)]
    assert all(json.loads(v) == {"i": int(k[4:]), "sq": int(k[4:]) ** 2} for k, v in rows)


def test_put_items_is_all_or_nothing_and_idempotent(tmp_path):
    from hhhlab.store import ResultsStore

    run = ResultsStore(tmp_path).create_run("x", {})
    run.put_items({"a": 1, "b": [2]})
    run.put_items({"b": [3], "c": None})
    run.put_items({})
    assert run.items() == {"a": 1, "b": [3], "c": None}
    with pytest.raises(TypeError):  # an unserialisable value fails before anything is written
        run.put_items({"d": 4, "e": object.__new__(type("X", (), {"__str__": None}))})
    assert "d" not in run.items()
