"""The paper's synthetic ranked-vs-binary PMP experiment (App. C.6, Fig 33), as data.

676 symbols (all ordered pairs of uppercase letters) get a random ranking. A sequence is its
symbol repeated: ``(AC)(AC)(AC)(AC)``. Data sets of preference pairs:

* ``T0`` — pairs of two symbols' sequences, the higher-ranked better (the fine-tuning target);
* ``T1``-``T4`` — the same after 10 / 40 / 160 / 640 random transpositions of the ranking
  ("weakly" to "very strongly scrambled");
* ``Tb`` — binary: the top half of the true ranking is GOOD, the bottom half BAD, as
  ``GOOD:x > BAD:x`` and ``BAD:y > GOOD:y`` (`hhhlab.data.schema.binarize` spacing).

The paper's explanation for why binary PMP transfers better: a ranked PMP learns a rigid order
that fine-tuning must unscramble; a binary one learns a coarse, correct signal.

`SyntheticPairSource` is a `hhhlab.train.sources.BatchSource` that draws pairs from an index
(seeded by (seed, step)), never materialising the data: any number of pairs (the ≥ 1M-pair
scale test) in constant memory, and resumable (a step's batch is a pure function of the step).
"""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field

from hhhlab.data.schema import Pair, PreferenceGroup, binarize, stable_hash, write_jsonl

SCRAMBLES = {"T0": 0, "T1": 10, "T2": 40, "T3": 160, "T4": 640}
LABELS = {"none": "No PM pretrain", "Tb": "Binary", "T1": "Weakly scrambled", "T2": "Moderately scrambled",
          "T3": "Strongly scrambled", "T4": "Very strongly scrambled"}
"""Fig 33's legend for each pre-training condition."""


@dataclass(frozen=True)
class SymbolTask:
    """The symbols, their true ranking and the text of each symbol's sequence."""

    letters: int = 26
    repeats: int = 4
    seed: int = 0
    symbols: tuple[str, ...] = field(init=False)
    rank: dict[str, int] = field(init=False)  # symbol -> position; higher is better

    def __post_init__(self) -> None:
        abc = string.ascii_uppercase[: self.letters]
        symbols = tuple(a + b for a in abc for b in abc)
        order = list(symbols)
        random.Random(stable_hash("pmp-synthetic-ranking", self.seed)).shuffle(order)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "rank", {s: i for i, s in enumerate(order)})

    def text(self, symbol: str) -> str:
        return f"({symbol})" * self.repeats

    def scrambled(self, transpositions: int) -> dict[str, int]:
        """The ranking after ``transpositions`` swaps of two random positions (seeded; cached)."""
        return _scrambled(self.letters, self.seed, transpositions, tuple(sorted(self.symbols, key=self.rank.__getitem__)))

    def good(self, symbol: str) -> bool:
        """Tb's label: the top half of the true ranking."""
        return self.rank[symbol] >= len(self.symbols) // 2

    # -- pairs -------------------------------------------------------------------------------

    def ranked_group(self, a: str, b: str, ranking: dict[str, int], dataset: str) -> PreferenceGroup:
        return PreferenceGroup(id=f"synthetic:{dataset}:{a}:{b}", context="", responses=[self.text(a), self.text(b)],
                               scores=[float(ranking[a]), float(ranking[b])], kind="ranked", source="synthetic",
                               metadata={"dataset": dataset, "symbols": [a, b], "split_key": f"{min(a, b)}{max(a, b)}"})

    def binary_groups(self, symbol: str) -> list[PreferenceGroup]:
        """``GOOD:x > BAD:x`` for a top-half x, ``BAD:y > GOOD:y`` for a bottom-half y."""
        pair = Pair("", self.text(symbol), self.text(symbol), f"synthetic:Tb:{symbol}", "ranked", "synthetic",
                    {"dataset": "Tb", "symbols": [symbol]})
        good_half, bad_half = binarize(pair)
        return [good_half if self.good(symbol) else bad_half]

    def pair_at(self, dataset: str, index: int, seed: int = 0) -> list[PreferenceGroup]:
        """Item ``index`` of ``dataset`` (T0-T4 or Tb): a pure function of (task, dataset, index, seed)."""
        rng = random.Random(stable_hash("pmp-synthetic-pair", self.seed, seed, dataset, index))
        if dataset == "Tb":
            return self.binary_groups(rng.choice(self.symbols))
        a, b = rng.sample(self.symbols, 2)
        return [self.ranked_group(a, b, self.scrambled(SCRAMBLES[dataset]) if dataset != "T0" else self.rank,
                                  dataset)]

    def iter_pairs(self, dataset: str, n: int, seed: int = 0, exclude: set[str] | None = None
                   ) -> Iterator[PreferenceGroup]:
        """``n`` items of ``dataset``; ``exclude``: symbol pairs (``split_key``) to leave out."""
        ranking = self.scrambled(SCRAMBLES[dataset]) if dataset not in ("T0", "Tb") else self.rank
        rng = random.Random(stable_hash("pmp-synthetic-set", self.seed, seed, dataset))
        made = 0
        while made < n:
            if dataset == "Tb":
                yield from self.binary_groups(rng.choice(self.symbols))
            else:
                a, b = rng.sample(self.symbols, 2)
                g = self.ranked_group(a, b, ranking, dataset)
                if exclude and g.metadata["split_key"] in exclude:
                    continue
                yield g
            made += 1

    def write(self, dataset: str, n: int, path, seed: int = 0, exclude: set[str] | None = None) -> int:
        return write_jsonl(self.iter_pairs(dataset, n, seed, exclude), path)


@functools.lru_cache(maxsize=64)
def _scrambled(letters: int, seed: int, transpositions: int, ranked: tuple[str, ...]) -> dict[str, int]:
    order = list(ranked)
    rng = random.Random(stable_hash("pmp-synthetic-scramble", seed, transpositions))
    for _ in range(transpositions):
        i, j = rng.randrange(len(order)), rng.randrange(len(order))
        order[i], order[j] = order[j], order[i]
    return {s: i for i, s in enumerate(order)}


class SyntheticPairSource:
    """A `BatchSource` of ``n_pairs`` synthetic pairs drawn on demand (see the module docstring).

    ``global_batch(step)`` tokenises only that step's ``batch_size`` pairs; nothing else is held."""

    def __init__(self, task: SymbolTask, dataset: str, n_pairs: int, batch_size: int, encode, seed: int = 0):
        from hhhlab.train.data import DataStats

        self.task, self.dataset, self.n_pairs, self.batch_size = task, dataset, n_pairs, batch_size
        self.encode, self.seed, self.stats = encode, seed, DataStats()

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_pairs // self.batch_size)

    def global_batch(self, step: int) -> list:
        start = (step % self.steps_per_epoch) * self.batch_size
        out = []
        for index in range(start, min(start + self.batch_size, self.n_pairs)):
            for g in self.task.pair_at(self.dataset, index, self.seed):
                enc = self.encode(g, index, self.stats)
                if enc is not None:
                    out.append(enc)
        return out

    def describe(self) -> dict:
        return {"kind": "synthetic", "dataset": self.dataset, "pairs": self.n_pairs, "letters": self.task.letters,
                "batch_size": self.batch_size, "seed": self.seed}
