"""The teacher cache: the prompted teacher's top-k log-probs and ids for every corpus token, on disk.

The teacher runs once per corpus (App. B.5: "store the top-50 log-probs and their token
indices"); every epoch and every student that shares the tokenizer reads the same files.

Layout of a cache directory::

    manifest.json              what the cache holds (below); written first, atomically
    shard-00000.safetensors    tokens [n, T] int32, logprobs [n, T, k] float32|float16, ids [n, T, k] int32
    shard-00001.safetensors    ...

Row t of a window's ``logprobs``/``ids`` is the teacher's ``p(· | prompt, "Human:", window[:t])``,
so it is the target for the student's prediction of ``window[t]``. Shards are safetensors (no
pickle), each written to a temporary name, fsynced and renamed: a shard file either is complete
or does not exist, so a killed build resumes with the missing shards and ends byte-identical to
an uninterrupted one (each shard is computed from the same windows in the same batches).

Storage: float32 log-probs by default (4 + 4 bytes per stored entry, ``8k + 4`` bytes per token:
404 at k = 50). ``float16`` halves the log-probs (``6k + 4`` = 304 at k = 50); their rounding
(~1e-3 relative in probability) can push the top-k mass a hair over 1, which
`losses.teacher_bucket_logprobs` renormalises (a zero tail, never NaN).

The manifest records the teacher spec, prompt version, the prompt's token checksum, the corpus
checksum (the packed windows' bytes), k, the context length, the storage dtype and a checksum of
the tokenizer's vocabulary. Opening a cache for a run that differs in any of them is a
`CacheMismatchError` naming each difference, before any compute: a cache is never silently
reused for the wrong run. The student is not part of the key: any student whose tokenizer has
the same checksum reads the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hhhlab.errors import HHHLabError
from hhhlab.store import atomic_write_json, read_json

FORMAT = "hhhlab-teacher-cache/1"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class CacheMismatchError(HHHLabError):
    """A teacher cache that was built for another run (prompt, teacher, corpus, k, ...)."""


def tokenizer_checksum(tokenizer) -> str:
    """sha256 of the vocabulary (token -> id) and the special tokens: equal checksums encode
    every text to the same ids, which is what sharing a teacher cache needs."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    blob = json.dumps([vocab, special, type(tokenizer).__name__.removesuffix("Fast")], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def token_checksum(ids) -> str:
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """Everything a cache's contents depend on; two runs share a cache iff their keys are equal."""

    teacher: str
    prompt_version: str
    prefix_checksum: str  # the prompt + "Human:" token ids the teacher is conditioned on
    corpus_checksum: str
    n_windows: int
    context_length: int
    k: int
    dtype: str
    tokenizer_checksum: str
    vocab_size: int


@dataclass
class Manifest:
    key: CacheKey
    shard_size: int
    corpus: str  # a human-readable description of the corpus
    format: str = FORMAT

    @property
    def n_shards(self) -> int:
        return -(-self.key.n_windows // self.shard_size)

    def to_dict(self) -> dict:
        return {"format": self.format, **asdict(self.key), "shard_size": self.shard_size,
                "n_shards": self.n_shards, "corpus": self.corpus,
                "bytes_per_token": bytes_per_token(self.key.k, self.key.dtype)}

    @classmethod
    def from_dict(cls, d: dict, where: Path) -> Manifest:
        if d.get("format") != FORMAT:
            raise CacheMismatchError(f"{where}: not a teacher cache of format {FORMAT} (got {d.get('format')!r})")
        try:
            key = CacheKey(**{f: d[f] for f in CacheKey.__dataclass_fields__})
            return cls(key=key, shard_size=int(d["shard_size"]), corpus=str(d.get("corpus", "")))
        except (KeyError, TypeError) as exc:
            raise CacheMismatchError(f"{where}: manifest is missing or has a bad field ({exc})") from None


def bytes_per_token(k: int, dtype: str) -> int:
    """Disk bytes per corpus token: k log-probs, k int32 ids, the int32 token itself."""
    return k * (DTYPES[dtype].itemsize + 4) + 4


def _differences(have: CacheKey, want: CacheKey) -> list[str]:
    names = {"teacher": "teacher", "prompt_version": "prompt", "prefix_checksum": "prompt tokens",
             "corpus_checksum": "corpus (checksum of the packed windows)", "n_windows": "number of windows",
             "context_length": "context length", "k": "top-k", "dtype": "storage dtype",
             "tokenizer_checksum": "tokenizer", "vocab_size": "vocabulary size"}
    out = []
    for f, label in names.items():
        a, b = getattr(have, f), getattr(want, f)
        if a != b:
            short = (lambda x: x[:12] + "…") if isinstance(a, str) and len(a) == 64 else (lambda x: x)
            out.append(f"{label}: cache has {short(a)!r}, this run needs {short(b)!r}")
    return out


class TeacherCache:
    """A cache directory: check it against a run, build its missing shards, read windows."""

    def __init__(self, root: str | Path, manifest: Manifest):
        self.root = Path(root)
        self.manifest = manifest
        self._loaded: tuple[int, dict[str, torch.Tensor]] | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, key: CacheKey, *, shard_size: int = 64, corpus: str = "") -> TeacherCache:
        """The cache at ``root`` for ``key``: created (manifest only) when absent, checked when
        present. A cache built for another key raises CacheMismatchError naming the differences."""
        root = Path(root)
        path = root / "manifest.json"
        if path.exists():
            existing = Manifest.from_dict(read_json(path), path)
            diff = _differences(existing.key, key)
            if diff:
                raise CacheMismatchError(
                    f"teacher cache {root} was built for another run and is not reused: " + "; ".join(diff)
                    + ". Give another --cache directory, or delete this one to rebuild it.")
            return cls(root, existing)
        if root.exists() and any(root.glob("shard-*.safetensors")):
            raise CacheMismatchError(f"{root}: shard files without a manifest; delete the directory to rebuild")
        manifest = Manifest(key=key, shard_size=shard_size, corpus=corpus)
        atomic_write_json(path, manifest.to_dict())
        return cls(root, manifest)

    @classmethod
    def load(cls, root: str | Path) -> TeacherCache:
        """An existing cache, for reading (its manifest is the key)."""
        path = Path(root) / "manifest.json"
        if not path.exists():
            raise CacheMismatchError(f"{root}: no teacher cache here (manifest.json missing)")
        return cls(root, Manifest.from_dict(read_json(path), path))

    # -- building ----------------------------------------------------------------------------
    def shard_path(self, i: int) -> Path:
        return self.root / f"shard-{i:05d}.safetensors"

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.manifest.n_shards) if not self.shard_path(i).exists()]

    @property
    def complete(self) -> bool:
        return not self.missing_shards()

    def build(
        self,
        windows: np.ndarray,
        teacher: Callable[[list[list[int]]], list[tuple[torch.Tensor, torch.Tensor]]],
        *,
        on_shard: Callable[[int, int], None] | None = None,
    ) -> int:
        """Compute and write every missing shard; return how many were written.

        ``windows: [n_windows, T]``; ``teacher(windows) -> [(logprobs [T, k], ids [T, k])]`` (e.g.
        ``lambda w: engine.topk_logprobs(prefix, w, k)``). ``on_shard(done, total)`` reports
        progress. Leftover temporary files of a killed build are removed first."""
        key = self.manifest.key
        if windows.shape != (key.n_windows, key.context_length):
            raise CacheMismatchError(f"{self.root}: windows of shape {tuple(windows.shape)} for a cache of "
                                     f"{key.n_windows} x {key.context_length}")
        for tmp in self.root.glob(".shard-*.tmp"):
            tmp.unlink(missing_ok=True)
        todo = self.missing_shards()
        size, dtype = self.manifest.shard_size, DTYPES[key.dtype]
        for done, i in enumerate(todo, 1):
            rows = windows[i * size : (i + 1) * size]
            out = teacher([r.tolist() for r in rows])
            tensors = {
                "tokens": torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int32)),
                "logprobs": torch.stack([lp for lp, _ in out]).to(dtype).contiguous(),
                "ids": torch.stack([ids for _, ids in out]).to(torch.int32).contiguous(),
            }
            self._write_shard(i, tensors)
            if on_shard:
                on_shard(self.manifest.n_shards - len(todo) + done, self.manifest.n_shards)
        return len(todo)

    def _write_shard(self, i: int, tensors: dict[str, torch.Tensor]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".shard-{i:05d}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": FORMAT})  # one key: a map's order is not fixed
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.shard_path(i))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- reading -----------------------------------------------------------------------------
    def shard(self, i: int) -> dict[str, torch.Tensor]:
        """``{"tokens": [n, T], "logprobs": [n, T, k], "ids": [n, T, k]}`` of shard ``i``."""
        if self._loaded is None or self._loaded[0] != i:
            path = self.shard_path(i)
            if not path.exists():
                raise CacheMismatchError(f"{path}: shard missing; build the cache first (hhhlab distill resumes it)")
            self._loaded = (i, load_file(str(path)))
        return self._loaded[1]

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens [T] int32, logprobs [T, k], ids [T, k] int32)`` of window ``index``."""
        size = self.manifest.shard_size
        s = self.shard(index // size)
        j = index % size
        return s["tokens"][j], s["logprobs"][j], s["ids"][j]

    def __len__(self) -> int:
        return self.manifest.key.n_windows

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("shard-*.safetensors"))
