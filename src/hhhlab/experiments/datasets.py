"""Named preference datasets for sweeps: build once from a user's local copies, split, subsample.

A sweep names datasets the way the paper does (``hellaswag``, ``ethics-utilitarianism``, ...).
Each name maps to a data builder (`hhhlab.data.builders`), the folder under ``--data-dir`` that
holds the source's own files (laid out like ``../shared/data``), and an optional metadata filter.
``NAME=PATH`` instead names a JSONL of preference groups (or a folder holding ``train.jsonl`` and
``test.jsonl``) that the user built already.

Splits: ETHICS ships its own train and test files (we keep them: the paper reports the standard
test set; where a copy lacks the train file, the standard test set is re-split by context and
the sweep says so); every other source is split by context hash (`hhhlab.data.splits`), so a context is
never both trained on and evaluated. The training subset of size N is a seeded shuffle of the
train split, so a sweep at N=500 and one at N=5000 share their first 500 groups.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from hhhlab.data.schema import PreferenceGroup, read_jsonl, write_jsonl
from hhhlab.data.splits import assign_split
from hhhlab.errors import DataError


@dataclass(frozen=True)
class DatasetSpec:
    """How to get a named dataset from a data directory."""

    source: str  # builder name
    folder: str  # under --data-dir
    subset: str | None = None  # metadata["subset"] filter (ETHICS)
    own_splits: bool = False  # the source ships train/test files: metadata["split"]


KNOWN: dict[str, DatasetSpec] = {
    "hellaswag": DatasetSpec("hellaswag", "hellaswag"),
    "summarize": DatasetSpec("summarize", "summarize-from-feedback"),
    "stackexchange": DatasetSpec("stackexchange", "stackexchange"),
    "hh-rlhf": DatasetSpec("hh-rlhf", "hh-rlhf"),
    "truthfulqa": DatasetSpec("truthfulqa", "truthfulqa"),
    "code": DatasetSpec("code", "humaneval"),
    "ethics-commonsense": DatasetSpec("ethics", "ethics/commonsense", "commonsense", own_splits=True),
    "ethics-deontology": DatasetSpec("ethics", "ethics/deontology", "deontology", own_splits=True),
    "ethics-justice": DatasetSpec("ethics", "ethics/justice", "justice", own_splits=True),
    "ethics-virtue": DatasetSpec("ethics", "ethics/virtue", "virtue", own_splits=True),
    "ethics-utilitarianism": DatasetSpec("ethics", "ethics/utilitarianism", "utilitarianism", own_splits=True),
}


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    train: Path
    test: Path
    kind: str  # "ranked" or "binary" (the majority kind of its groups)
    n_train: int
    n_test: int
    note: str = ""


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_datasets(text: str) -> list[tuple[str, Path | None]]:
    """``"hellaswag,mine=/x/groups.jsonl"`` -> [("hellaswag", None), ("mine", Path("/x/groups.jsonl"))]."""
    out: list[tuple[str, Path | None]] = []
    for raw in (s.strip() for s in text.split(",")):
        if not raw:
            continue
        name, sep, path = raw.partition("=")
        name = name.strip()
        if sep and not _NAME.fullmatch(name):
            # the name becomes a cache folder and part of each cell's key in the results store
            raise DataError(f"dataset name {name!r} in {raw!r}: use letters, digits, '_', '-' or '.' "
                            "(NAME=PATH)")
        if any(name == seen for seen, _ in out):
            raise DataError(f"dataset {name!r} is given twice in {text!r}")
        if sep:
            if not path.strip():
                raise DataError(f"dataset {name!r}: no path after '=' (NAME=PATH)")
            out.append((name, Path(path.strip()).expanduser()))
        elif name in KNOWN:
            out.append((name, None))
        else:
            raise DataError(f"unknown dataset {name!r}: use one of {', '.join(KNOWN)} or NAME=PATH to a JSONL "
                            "of preference groups (hhhlab data build ...)")
    if not out:
        raise DataError("no datasets given")
    return out


def _build_all(name: str, spec: DatasetSpec, data_dir: Path | None, cache: Path) -> Path:
    """Build the whole source once into ``cache/all.jsonl`` (the builder's writer is atomic)."""
    from hhhlab.data.build import build

    target = cache / "all.jsonl"
    if target.exists():
        return target
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir (a folder laid out like shared/data, with "
                        f"{spec.folder}/ inside), or give NAME=PATH to groups you built with hhhlab data build")
    source_dir = data_dir / spec.folder
    if not source_dir.exists():
        raise DataError(f"dataset {name!r}: {source_dir} does not exist (expected the {spec.source} source files)")
    build(spec.source, source_dir, target)
    return target


def _source_fingerprint(name: str, path: Path | None, data_dir: Path | None) -> str:
    if path is None:
        ident = f"{name}|{data_dir.resolve() if data_dir else None}"
    else:
        files = [path / "train.jsonl", path / "test.jsonl"] if path.is_dir() else [path]
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) if f.exists() else (str(f), None)
                 for f in files]
        ident = json.dumps(stats)
    return hashlib.sha1(ident.encode()).hexdigest()[:8]


def prepare_dataset(
    name: str, path: Path | None, *, data_dir: Path | None, cache: Path, train_size: int | None,
    eval_size: int | None, seed: int = 0,
) -> PreparedDataset:
    """Resolve a dataset to train/test JSONL files of the requested sizes (cached, deterministic).

    The cache folder is per source (its path, size and modification time, or the data dir), so a
    NAME pointed at another or a rebuilt file never reuses the old file's splits."""
    cache = cache / f"{name}-{_source_fingerprint(name, path, data_dir)}"
    cache.mkdir(parents=True, exist_ok=True)
    train_path, test_path = cache / f"train-{train_size}-s{seed}.jsonl", cache / f"test-{eval_size}.jsonl"
    spec = KNOWN.get(name) if path is None else None
    note = ""
    if path is not None and path.is_dir():
        train_src: list[PreferenceGroup] = list(read_jsonl(path / "train.jsonl"))
        test_src: list[PreferenceGroup] = list(read_jsonl(path / "test.jsonl"))
    else:
        source = path if path is not None else _build_all(name, spec, data_dir, cache)  # type: ignore[arg-type]
        if path is not None and not path.exists():
            raise DataError(f"dataset {name!r}: {path} does not exist")
        train_src, test_src = [], []
        groups = [g for g in read_jsonl(source)
                  if not (spec and spec.subset and g.metadata.get("subset") != spec.subset)]
        own = bool(spec and spec.own_splits)
        if own and not any(g.metadata.get("split") == "train" for g in groups):
            # e.g. a copy without ETHICS' train file: re-split the standard test set by context
            own, note = False, "no train split in the source: its standard test set re-split 80/20 by context"
            groups = [g for g in groups if g.metadata.get("split") == "test"]
        for g in groups:
            if own:
                split = str(g.metadata.get("split", ""))
                split = "train" if split == "train" else "test" if split == "test" else "other"
            else:
                split = assign_split(g.split_key, (0.8, 0.0, 0.2), seed=0)
            (train_src if split == "train" else test_src if split == "test" else []).append(g)
    if not train_src or not test_src:
        raise DataError(f"dataset {name!r}: empty split (train {len(train_src)}, test {len(test_src)} groups)")
    rng = random.Random(seed)
    rng.shuffle(train_src)
    train = train_src[:train_size] if train_size else train_src
    # The test subset does not depend on the seed: every cell is evaluated on the same items.
    test = sorted(test_src, key=lambda g: g.id)
    random.Random(1234).shuffle(test)
    test = test[:eval_size] if eval_size else test
    if not train_path.exists():
        write_jsonl(train, train_path)
    if not test_path.exists():
        write_jsonl(test, test_path)
    kinds = [g.kind for g in train + test]
    kind = max(set(kinds), key=kinds.count)
    return PreparedDataset(name, train_path, test_path, kind, len(train), len(test), note)
