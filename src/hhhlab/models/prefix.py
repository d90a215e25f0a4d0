"""Find requests that share a long token prefix, and decide which prefixes are worth reusing.

Sorting token sequences lexicographically puts sequences with long common prefixes next to each
other, and the common prefix of any run of sorted sequences is the minimum of the adjacent
common-prefix lengths (LCPs) in that run. That gives a tree (split a run where the LCP is
smallest) over which a small dynamic programme picks, per run, the cheaper of: one group that
encodes the run's common prefix once and runs every member's remaining tokens, or the best
split into sub-runs with longer prefixes of their own. Cost is counted in tokens pushed through
the model plus a fixed overhead per group (an extra forward call and a smaller batch), so a
4,000-token HHH prompt shared by 400 requests becomes one group, and two answers sharing a short
question stay in the ordinary batched path.

This is the first of two levels of reuse. The second is the engine's (``Engine._batches``):
within a group, requests whose context after the prefix is identical (one question, several
answers) share a tree row that runs that context once. So HHH prompt + question + answer runs
the prompt once per group, the question once per row, each answer once. The cost model here
still counts the question once per answer, so it slightly overvalues question-level prefixes.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass
class PrefixGroup:
    prefix_len: int  # 0: no shared prefix, members are scored whole
    members: list[int]  # indices into the planned sequences


def _key(tokens: Sequence[int]) -> bytes:
    """Tokens as bytes (4 per token): C-speed conversion, sorting and comparison.

    Native byte order is fine: sorting needs only that sequences sharing a token prefix share a
    byte prefix (they do), not that the order is the tokens' numeric order.
    """
    return array("I", tokens).tobytes()


def _lcp(a: bytes, b: bytes) -> int:
    """Common prefix of two keys, in tokens: binary search with memcmp-speed slice comparisons."""
    lo, hi = 0, min(len(a), len(b)) // 4
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[: 4 * mid] == b[: 4 * mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan_prefix_groups(
    sequences: Sequence[Sequence[int]],
    lengths: Sequence[int],
    *,
    limits: Sequence[int] | None = None,
    min_prefix: int = 16,
    group_overhead: int = 256,
) -> list[PrefixGroup]:
    """Group sequences by a shared prefix to encode once.

    ``sequences[i]``: tokens of sequence i that may lie in a shared prefix; ``limits[i]``: at
    most this many of them may (for scoring: all but the last context token, which must run to
    predict the continuation). ``lengths[i]``: the full token count. Every index appears in
    exactly one group; groups without a worthwhile prefix are merged into one group with
    ``prefix_len == 0``. A sequence object passed several times (one context, several answers)
    is converted once.
    """
    n = len(sequences)
    if n == 0:
        return []
    limits = list(limits) if limits is not None else [len(s) for s in sequences]
    memo: dict[int, bytes] = {}
    keys = [memo[id(s)] if id(s) in memo else memo.setdefault(id(s), _key(s)) for s in sequences]
    order = sorted(range(n), key=keys.__getitem__)
    # Capping each adjacent LCP by both members' limits keeps "common prefix of a sorted run =
    # minimum adjacent LCP" true for the capped prefixes too.
    lcp = [min(_lcp(keys[a], keys[b]), limits[a], limits[b]) for a, b in pairwise(order)]
    total = [0] * (n + 1)
    for j, i in enumerate(order):
        total[j + 1] = total[j] + lengths[i]

    # Runs [lo, hi] of the sorted order, children before parents (reverse of discovery order).
    runs: list[tuple[int, int]] = []
    children: dict[tuple[int, int], list[tuple[int, int]]] = {}
    stack = [(0, n - 1)]
    while stack:
        lo, hi = stack.pop()
        runs.append((lo, hi))
        if lo == hi:
            continue
        m = min(lcp[lo:hi])
        kids, start = [], lo
        for j in range(lo, hi):
            if lcp[j] == m:
                kids.append((start, j))
                start = j + 1
        kids.append((start, hi))
        children[(lo, hi)] = kids
        stack.extend(kids)

    best: dict[tuple[int, int], tuple[int, list[PrefixGroup]]] = {}
    for lo, hi in reversed(runs):
        members = [order[j] for j in range(lo, hi + 1)]
        whole = total[hi + 1] - total[lo]
        if lo == hi:
            best[(lo, hi)] = (whole, [PrefixGroup(0, members)])
            continue
        m = min(lcp[lo:hi])
        split_cost = sum(best[c][0] for c in children[(lo, hi)])
        one_cost = m + (whole - m * len(members)) + group_overhead if m >= min_prefix else whole
        if one_cost < split_cost:
            best[(lo, hi)] = (one_cost, [PrefixGroup(m if m >= min_prefix else 0, members)])
        else:
            best[(lo, hi)] = (split_cost, [g for c in children[(lo, hi)] for g in best[c][1]])

    groups = best[(0, n - 1)][1]
    plain = sorted(i for g in groups if g.prefix_len == 0 for i in g.members)
    shared = [g for g in groups if g.prefix_len > 0]
    return shared + ([PrefixGroup(0, plain)] if plain else [])
