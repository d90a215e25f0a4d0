"""Which two systems a rater sees next: balanced over pairs, sides at random.

Balanced: the next pair is one of the unordered pairs with the fewest comparisons so far (rated
plus shown-and-pending, read from the database at start and counted in memory after), ties broken
at random. So after N comparisons every pair has floor(N/P) or ceil(N/P) of them, and an Elo fit
never rests on a pair that happened to be drawn rarely. Sides: a fair coin per comparison
(position bias averages out; ``swapped`` records the coin). ``serve --pairs paper`` restricts
the pairs to the paper's design (`paper_pairs`).
"""

from __future__ import annotations

import itertools
import random
import threading


class BalancedScheduler:
    def __init__(self, systems: list[str], counts: dict[frozenset[str], int] | None = None, *,
                 seed: int | None = None, pairs: list[frozenset[str]] | None = None):
        self.pairs = pairs or [frozenset(p) for p in itertools.combinations(sorted(systems), 2)]
        if not self.pairs:
            raise ValueError("no pair of systems to compare")
        self.counts = {p: (counts or {}).get(p, 0) for p in self.pairs}
        self.rng = random.Random(seed)
        self._lock = threading.Lock()

    def next_pair(self) -> tuple[str, str, bool]:
        """``(system_a, system_b, swapped)``: who is on side A and B; ``swapped`` is the coin."""
        with self._lock:
            low = min(self.counts.values())
            pair = self.rng.choice([p for p in self.pairs if self.counts[p] == low])
            self.counts[pair] += 1
            first, second = sorted(pair)
            swapped = self.rng.random() < 0.5
        return (second, first, True) if swapped else (first, second, False)

    def release(self, a: str, b: str) -> None:
        """A scheduled pair that was never shown (its generation failed) does not count."""
        with self._lock:
            key = frozenset((a, b))
            if self.counts.get(key, 0) > 0:
                self.counts[key] -= 1


def paper_pairs(systems: dict[str, tuple[str, str]]) -> list[frozenset[str]]:
    """The paper's design (§2.4): prompted systems all against each other, and every other
    condition only against the prompted system of the same model. ``systems``: name ->
    (base model, condition)."""
    prompted = {model: name for name, (model, cond) in systems.items() if cond == "prompt"}
    pairs = [frozenset(p) for p in itertools.combinations(sorted(prompted.values()), 2)]
    for name, (model, cond) in sorted(systems.items()):
        if cond != "prompt" and model in prompted:
            pairs.append(frozenset((name, prompted[model])))
    return pairs
