"""Where eval data comes from: a local copy, the BIG-bench cache, or the Hugging Face hub.

Lookup order for one eval:
1. ``--data-dir DIR`` when given: a copy laid out like the developers' ``shared/data``
   (``DIR/bigbench/<task>/task.json``, ``DIR/truthfulqa/TruthfulQA.csv``,
   ``DIR/lambada/lambada_openai.jsonl``, ``DIR/hellaswag/hellaswag_val_full.txt.bz2``). Only this
   directory is used, so a result never silently comes from somewhere else.
2. Otherwise the cache that ``hhhlab data fetch bigbench`` fills (``$HHHLAB_CACHE/data``, the
   same layout), then the hub through ``datasets.load_dataset`` when it is reachable.

A dataset found nowhere is a ``DataError`` that lists where we looked and how to get it. A
malformed file names the file and the record (line or example index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hhhlab.errors import DataError
from hhhlab.paths import cache_home

FETCH_HINT = "run `hhhlab data fetch bigbench` (downloads the bigbench==1.0.0 sdist from PyPI)"


def cache_data_dir() -> Path:
    """The data directory ``hhhlab data fetch`` writes (laid out like shared/data)."""
    return cache_home() / "data"


def data_roots(data_dir: Path | None, *, include_cache: bool = True) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    return [cache_data_dir()] if include_cache else []


def find_local(data_dir: Path | None, *relpaths: str, include_cache: bool = True) -> Path | None:
    """The first existing ``root/relpath`` over the lookup roots, or None."""
    for root in data_roots(data_dir, include_cache=include_cache):
        for rel in relpaths:
            p = root / rel
            if p.exists():
                return p
    return None


def missing(what: str, data_dir: Path | None, relpaths: list[str], hub: str | None, hub_error: str | None,
            hint: str) -> DataError:
    roots = data_roots(data_dir)
    looked = [str(r / rel) for r in roots for rel in relpaths]
    msg = f"{what}: dataset not found; looked for {', '.join(looked)}"
    if hub and data_dir is None:
        msg += f"; the hub ({hub}) failed: {hub_error}"
    return DataError(f"{msg}. To get it: {hint}, or pass --data-dir pointing at a local copy laid out like "
                     "shared/data (see docs/evals.md)")


def load_hub(name: str, config: str | None, split: str) -> tuple[Any | None, str | None]:
    """``datasets.load_dataset(name, config, split=split)``; (None, reason) when unreachable."""
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split) if config else datasets.load_dataset(name, split=split)
        return ds, None
    except Exception as exc:  # noqa: BLE001 -- offline, missing, auth: all mean "not from the hub"
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def read_json_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; a bad line is an error naming it."""
    out = []
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}, line {lineno}: expected a JSON object, got {type(rec).__name__}")
            out.append((lineno, rec))
    return out


def bigbench_examples(path: Path) -> tuple[dict, list[dict]]:
    """A BIG-bench JSON task: (task fields without examples, validated multiple-choice examples).

    Every example must have a string ``input`` and a ``target_scores`` object of at least two
    answers with numeric scores and at least one positive score."""
    task = read_json_file(path)
    if not isinstance(task, dict) or not isinstance(task.get("examples"), list):
        raise DataError(f"{path}: not a BIG-bench JSON task (no 'examples' list)")
    for i, ex in enumerate(task["examples"]):
        where = f"{path}, example {i}"
        if not isinstance(ex, dict):
            raise DataError(f"{where}: expected an object, got {type(ex).__name__}")
        if not isinstance(ex.get("input"), str) or not ex["input"].strip():
            raise DataError(f"{where}: missing or empty 'input'")
        ts = ex.get("target_scores")
        if not isinstance(ts, dict) or len(ts) < 2:
            raise DataError(f"{where}: 'target_scores' must map at least two answers to scores")
        for ans, sc in ts.items():
            if not ans.strip():
                raise DataError(f"{where}: empty answer in 'target_scores'")
            if isinstance(sc, bool) or not isinstance(sc, (int, float)):
                raise DataError(f"{where}: score of answer {ans[:40]!r} is {sc!r}, not a number")
        if max(ts.values()) <= 0:
            raise DataError(f"{where}: no answer has a positive target score")
    meta = {k: v for k, v in task.items() if k != "examples"}
    return meta, task["examples"]
