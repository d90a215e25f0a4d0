"""Batch sources: where the global batch of step ``s`` comes from.

A source answers one question, ``global_batch(step)``: the tokenised items every process trains
on at that step — a pure function of the step, the seed and the data, never of the number of
processes or of what ran before. So a run resumed at step ``s`` under any process count
continues exactly where it stopped, and the loop shares each global batch between processes.

* `MemorySource` — every record read and tokenised up front (today's default, ``source:
  memory``): epochs of seeded permutations, optionally length-grouped (less padding).
* `StreamMixture` — a seeded, weighted mixture of JSONL files (preference groups or texts),
  ``source: stream``: a file is never read whole. Each slot of each global batch picks a file
  with probability ∝ its weight from a generator seeded by ``(seed, step)``; a file's items are
  taken in order, shuffled within blocks of ``shuffle_buffer`` lines by a permutation seeded by
  ``(seed, file, epoch, block)``, and it starts over (next epoch, another shuffle) at its end.
  Memory holds one block per file, whatever the corpus size; resuming replays the per-step
  file choices (cheap) and skips lines without parsing them.

Both hold records as the objective encodes them (`Objective.encode`), so any objective trains on
any source that yields its record kind (``"groups"`` or ``"text"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from hhhlab.errors import DataError
from hhhlab.train.batching import EncodedGroup
from hhhlab.train.data import DataStats, is_plain_text, iter_lines, parse_line, read_records

Encoder = Callable[[Any, int], "EncodedGroup | None"]  # (record, index) -> item or None (skipped)


class BatchSource(Protocol):
    """What the training loop needs from a data source."""

    stats: DataStats

    def global_batch(self, step: int) -> list[EncodedGroup]:
        """The items of step ``step`` (0-based), identical in every process."""
        ...

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps in one pass over the data; None for an endless stream (max_steps required)."""
        ...

    def describe(self) -> dict:
        """JSON-able summary for metrics.json (files, weights, counts)."""
        ...


# -- in memory -----------------------------------------------------------------------------------

def epoch_batches(items: Sequence[EncodedGroup], batch_size: int, epoch: int, seed: int,
                  length_grouped: bool) -> list[list[int]]:
    """The global batches of one epoch (indices into ``items``), the same in every process.

    Length grouping: shuffle, cut into mega-batches of 32 batches, sort each by length, cut into
    batches and shuffle the batches — similar lengths share a batch (little padding) while the
    order stays random. The last incomplete batch is dropped (every step sees ``batch_size``)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(len(items), generator=g).tolist()
    bs = min(batch_size, len(items))
    if length_grouped:
        mega = bs * 32
        perm = [i for s in range(0, len(perm), mega)
                for i in sorted(perm[s : s + mega], key=lambda i: -items[i].n_tokens)]
    batches = [perm[s : s + bs] for s in range(0, len(perm) - bs + 1, bs)]
    if length_grouped:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    return batches


class MemorySource:
    """Every item in memory; step ``s`` is batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``."""

    def __init__(self, items: list[EncodedGroup], *, batch_size: int, seed: int, length_grouped: bool,
                 stats: DataStats | None = None, files: Sequence[str] = ()):
        if not items:
            raise DataError(f"{', '.join(files) or 'the training data'}: yields no usable items")
        self.items = items
        self.batch_size = batch_size
        self.seed = seed
        self.length_grouped = length_grouped
        self.stats = stats or DataStats()
        self.files = list(files)
        self._epoch: tuple[int, list[list[int]]] | None = None

    @classmethod
    def from_files(cls, files: Sequence[str], kind: str, encode: Encoder, *, batch_size: int, seed: int,
                   length_grouped: bool, limit: int | None = None, stats: DataStats | None = None) -> MemorySource:
        stats = stats if stats is not None else DataStats()
        records: list = []
        for f in files:
            records += read_records(f, kind, limit=limit and limit - len(records), stats=stats)
            if limit and len(records) >= limit:
                break
        items = [e for i, r in enumerate(records) if (e := encode(r, i)) is not None]
        if not items:
            raise DataError(f"{', '.join(files)}: no record fits the window "
                            f"({stats.skipped_response_too_long} responses too long)")
        return cls(items, batch_size=batch_size, seed=seed, length_grouped=length_grouped, stats=stats,
                   files=files)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.items) // self.batch_size)

    def global_batch(self, step: int) -> list[EncodedGroup]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, epoch_batches(self.items, self.batch_size, epoch, self.seed, self.length_grouped))
        return [self.items[i] for i in self._epoch[1][pos]]

    def describe(self) -> dict:
        return {"kind": "memory", "files": self.files, "items": len(self.items)}


# -- streamed mixture ------------------------------------------------------------------------------

class _FileStream:
    """Item ``c`` of one file, in block-shuffled order, reading the file forward only."""

    def __init__(self, path: str, kind: str, file_index: int, seed: int, buffer: int, stats: DataStats):
        self.path, self.kind, self.k, self.seed, self.buffer, self.stats = path, kind, file_index, seed, buffer, stats
        self.plain = kind == "text" and is_plain_text(path)
        self.n_lines = sum(1 for _, line in iter_lines(path) if line.strip())  # one streamed pass
        self._lines: Any = None  # iterator over (line number, line) of non-blank lines
        self._next = 0  # index (among non-blank lines, this epoch) of the next line it yields
        self._epoch = -1
        self._block: tuple[int, int, list[tuple[int, str]], list[int]] | None = None  # epoch, b, lines, perm

    def _open(self, epoch: int) -> None:
        self._lines = ((n, line) for n, line in iter_lines(self.path) if line.strip())
        self._next, self._epoch = 0, epoch

    def _load_block(self, epoch: int, b: int) -> None:
        start = b * self.buffer
        if epoch != self._epoch or start < self._next:
            self._open(epoch)
        for _ in range(start - self._next):  # skip, without parsing, to the block's first line
            next(self._lines)
        size = min(self.buffer, self.n_lines - start)
        lines = [next(self._lines) for _ in range(size)]
        self._next = start + size
        g = np.random.default_rng([self.seed, self.k, epoch, b])
        self._block = (epoch, b, lines, g.permutation(size).tolist())

    def line(self, c: int) -> tuple[int, str]:
        """``(line number, text)`` of the file's ``c``-th item (0-based, over all epochs)."""
        epoch, r = divmod(c, self.n_lines)
        b, off = divmod(r, self.buffer)
        if self._block is None or self._block[:2] != (epoch, b):
            self._load_block(epoch, b)
        assert self._block is not None
        _, _, lines, perm = self._block
        return lines[perm[off]]


class StreamMixture:
    """A seeded, weighted mixture of record files, streamed (see the module docstring)."""

    def __init__(self, files: Sequence[str], kind: str, encode: Encoder, *, batch_size: int, seed: int,
                 weights: Sequence[float] | None = None, shuffle_buffer: int = 1024, stats: DataStats | None = None):
        if not files:
            raise DataError("a streamed source needs at least one file")
        weights = list(weights) if weights is not None else [1.0] * len(files)
        if len(weights) != len(files):
            raise DataError(f"{len(weights)} mixture weights for {len(files)} training files ({', '.join(files)})")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise DataError(f"mixture weights must be >= 0 with a positive sum, not {weights}")
        self.files, self.kind, self.encode = list(files), kind, encode
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer
        self.weights = [w / sum(weights) for w in weights]
        self._cum = np.cumsum(self.weights)
        self.stats = stats if stats is not None else DataStats()
        self.streams = [_FileStream(f, kind, k, seed, shuffle_buffer, self.stats) for k, f in enumerate(files)]
        for f, s, w in zip(files, self.streams, self.weights):
            if s.n_lines == 0:
                raise DataError(f"{f}: the training file is empty (a streamed source yields nothing)")
            if w > 0:
                self._check_yields(s)
        self._step = 0
        self._taken = np.zeros(len(files), dtype=np.int64)  # items taken from each file before self._step

    def _check_yields(self, s: _FileStream) -> None:
        """Refuse a file with no usable record before training (first usable record found)."""
        probe = DataStats()
        for n, line in iter_lines(s.path):
            rec = parse_line(line, f"{s.path}:{n}", probe, self.kind, s.plain)
            if rec is not None and self.encode(rec, 0) is not None:
                return
        raise DataError(f"{s.path}: yields no usable {'texts' if self.kind == 'text' else 'preference groups'} "
                        f"(skipped {probe.skipped_no_preference + probe.skipped_empty_text} records)")

    @property
    def steps_per_epoch(self) -> None:
        return None

    def choices(self, step: int) -> np.ndarray:
        """The file of each slot of step ``step``: ``[batch_size]`` indices, seeded by (seed, step)."""
        u = np.random.default_rng([self.seed, 1 << 20, step]).random(self.batch_size)
        return np.minimum(np.searchsorted(self._cum, u, side="right"), len(self.files) - 1)

    def _seek(self, step: int) -> None:
        if step < self._step:
            self._step, self._taken[:] = 0, 0
        while self._step < step:
            self._taken += np.bincount(self.choices(self._step), minlength=len(self.files))
            self._step += 1

    def global_batch(self, step: int) -> list[EncodedGroup]:
        self._seek(step)
        items: list[EncodedGroup] = []
        taken = self._taken.copy()
        for slot, k in enumerate(self.choices(step).tolist()):
            stream = self.streams[k]
            lineno, line = stream.line(int(taken[k]))
            taken[k] += 1
            rec = parse_line(line, f"{stream.path}:{lineno}", self.stats, self.kind, stream.plain)
            enc = self.encode(rec, slot) if rec is not None else None
            if enc is not None:
                items.append(enc)
        self._taken, self._step = taken, step + 1
        return items

    def describe(self) -> dict:
        return {"kind": "stream", "files": self.files, "weights": self.weights, "shuffle_buffer": self.shuffle_buffer,
                "lines": [s.n_lines for s in self.streams]}
