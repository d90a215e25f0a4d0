"""The results store: run directories on disk plus an embedded SQLite index.

Every command writes a run directory (resolved config, metrics JSON, log, item results) and
registers the run in ``runs.sqlite`` so reports can query runs later. A run's metrics are a
results document (`hhhlab.results`: versioned envelope, ``{value, lo, hi, n, method}``
estimates), in ``metrics.json`` and in the index; ``runs()`` gives each run's document
(``results``) and its payload (``metrics``, the stage's own dict). Writes are atomic (temp
file, fsync, rename): a crash or a full disk never leaves a half-written result, and earlier
results stay intact. Item-level results (one eval item, one sweep cell) are keyed, so a resumed
run skips what it finished and never stores an item twice.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hhhlab.errors import StoreError
from hhhlab.paths import data_home

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, created TEXT NOT NULL,
  status TEXT NOT NULL, path TEXT NOT NULL, config TEXT, metrics TEXT
);
CREATE TABLE IF NOT EXISTS items (
  run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
);
"""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (checkpoints, downloaded task files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file and rename; raise StoreError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or half-written file into an error that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: corrupt or truncated JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


class ResultsStore:
    """Runs under ``root`` (default ``$HHHLAB_HOME``), indexed in ``root/runs.sqlite``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else data_home()
        self.db_path = self.root / "runs.sqlite"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the results store at {self.db_path}: {exc}") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=30)
        try:
            with con:
                yield con
        finally:
            con.close()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._connect() as con:
                return con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.db_path}: {exc}") from exc

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, kind: str, config: dict, *, name: str | None = None, run_id: str | None = None) -> Run:
        """Create (or reopen, when ``run_id`` exists: resume) a run directory."""
        if run_id:
            existing = self._exec("SELECT path FROM runs WHERE run_id=?", (run_id,))
            if existing:
                return Run(self, run_id, Path(existing[0][0]))
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        run_id = run_id or f"{kind}-{stamp}-{uuid.uuid4().hex[:6]}"
        path = self.root / "runs" / run_id
        atomic_write_json(path / "config.json", config)
        self._exec(
            "INSERT INTO runs(run_id, kind, name, created, status, path, config) VALUES (?,?,?,?,?,?,?)",
            (run_id, kind, name, _dt.datetime.now(_dt.UTC).isoformat(), "running", str(path),
             json.dumps(config, default=str)),
        )
        return Run(self, run_id, path)

    def runs(self, kind: str | None = None) -> list[dict]:
        sql = "SELECT run_id, kind, name, created, status, path, config, metrics FROM runs"
        rows = self._exec(sql + (" WHERE kind=?" if kind else "") + " ORDER BY created", (kind,) if kind else ())
        cols = ["run_id", "kind", "name", "created", "status", "path", "config", "metrics"]
        out = []
        from hhhlab.results import SchemaError, parse_results

        for row in rows:
            rec = dict(zip(cols, row))
            for key in ("config", "metrics"):
                rec[key] = json.loads(rec[key]) if rec[key] else None
            rec["results"] = None
            if rec["metrics"] is not None:
                try:
                    rec["results"] = parse_results(rec["metrics"], source=f"run {rec['run_id']}", kind=None)
                    rec["metrics"] = rec["results"].payload  # legacy rows: the dict itself
                except SchemaError:
                    pass  # a document of a newer schema: kept raw, the report says why it cannot read it
            out.append(rec)
        return out


class Run:
    """One run: a directory plus its row in the index and its keyed item results."""

    def __init__(self, store: ResultsStore, run_id: str, path: Path):
        self.store, self.run_id, self.path = store, run_id, path

    def put_item(self, key: str, value: Any) -> None:
        """Record one finished item; re-putting the same key replaces it (no duplicates)."""
        self.store._exec(
            "INSERT OR REPLACE INTO items(run_id, key, value) VALUES (?,?,?)",
            (self.run_id, key, json.dumps(value, default=str)),
        )

    def put_items(self, items: Mapping[str, Any]) -> None:
        """Record many finished items in one transaction: a crash keeps all of them or none, and
        the disk syncs once instead of once per item (``put_item`` costs one fsync, ~25 ms on a
        busy disk, which dominates a fast eval of thousands of items)."""
        rows = [(self.run_id, key, json.dumps(value, default=str)) for key, value in items.items()]
        if not rows:
            return
        try:
            with self.store._connect() as con:
                con.executemany("INSERT OR REPLACE INTO items(run_id, key, value) VALUES (?,?,?)", rows)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.store.db_path}: {exc}") from exc

    def items(self) -> dict[str, Any]:
        rows = self.store._exec("SELECT key, value FROM items WHERE run_id=?", (self.run_id,))
        return {k: json.loads(v) for k, v in rows}

    def finish(self, metrics: Mapping[str, Any], status: str = "finished") -> Path:
        """Write the run's results document (``metrics.json``) and index it. ``metrics`` is a
        document (`results.make_results`) or a stage's flat dict, which is wrapped in one of the
        run's kind (its ``estimates`` entry, or the estimate records found in it, become the
        document's estimates)."""
        from hhhlab.results import KINDS, SCHEMA_NAME, make_results

        doc: Any = dict(metrics)
        if doc.get("schema") != SCHEMA_NAME:
            kind = self.kind if self.kind in KINDS else "benchmark"
            payload = {k: v for k, v in doc.items() if k != "estimates"}
            from hhhlab.results import find_estimates

            doc = make_results(kind, estimates=doc.get("estimates") or dict(find_estimates(payload)),
                               payload=payload, run_id=self.run_id, run_kind=self.kind, status=status)
        out = atomic_write_json(self.path / "metrics.json", doc)
        self.store._exec(
            "UPDATE runs SET status=?, metrics=? WHERE run_id=?",
            (status, json.dumps(doc, default=str), self.run_id),
        )
        return out

    @property
    def kind(self) -> str | None:
        rows = self.store._exec("SELECT kind FROM runs WHERE run_id=?", (self.run_id,))
        return rows[0][0] if rows else None

    def log(self, message: str) -> None:
        try:
            with open(self.path / "log.txt", "a", encoding="utf-8") as fh:
                fh.write(f"{_dt.datetime.now().isoformat(timespec='seconds')} {message}\n")
        except OSError as exc:
            raise StoreError(f"cannot append to {self.path / 'log.txt'}: {exc.strerror or exc}") from exc
