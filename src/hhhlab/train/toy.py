"""A synthetic preference task that a tiny random model learns in a few dozen steps.

Each context is a short random "question"; the preferred response ends with a marker word
(``good``) and the other with another (``bad``); ranked groups have three responses ending in
``good`` > ``fine`` > ``bad``. It checks that training, checkpoints, resumption and distribution
work end to end, in seconds, without any downloaded data. Not a benchmark of anything.
"""

from __future__ import annotations

import random
from pathlib import Path

from hhhlab.data.schema import PreferenceGroup, write_jsonl

WORDS = ["apple", "river", "stone", "cloud", "music", "paper", "green", "table", "light", "sound"]


def toy_groups(n: int, *, seed: int = 0, ranked: bool = False, max_words: int = 20) -> list[PreferenceGroup]:
    rng = random.Random(seed)
    phrase = lambda lo, hi: " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    out = []
    for i in range(n):
        context = f"Human: {phrase(3, max_words)}?\n\nAssistant:"
        markers = ["good", "fine", "bad"] if ranked else ["good", "bad"]
        scores = [2, 1, 0] if ranked else [1, 0]
        items = [(f" {phrase(1, 4)} {m}", s) for m, s in zip(markers, scores)]
        rng.shuffle(items)
        out.append(PreferenceGroup(id=f"toy:{seed}:{i}", context=context, responses=[r for r, _ in items],
                                   scores=[s for _, s in items], kind="ranked" if ranked else "binary",
                                   source="toy", metadata={"group_id": f"g{i // 2}"}))
    return out


def write_toy(path: str | Path, n: int, *, seed: int = 0, ranked: bool = False) -> Path:
    write_jsonl(toy_groups(n, seed=seed, ranked=ranked), path)
    return Path(path)
