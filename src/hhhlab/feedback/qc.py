"""Quality-control flags on comparisons: visible, counted, never a silent filter.

Three rules (thresholds in ``EloConfig``):

* ``too_fast`` — rated less than ``min_seconds`` after the pair was shown (``rating_seconds``;
  the page only enables the scale once both replies are revealed, so this is reading time);
* ``one_side`` — every comparison of a rater who, over at least ``side_bias_min_n`` ratings,
  picked the same side (A or B) at least ``side_bias_frac`` of the time: with sides randomised,
  an honest rater's side split is near 50/50;
* ``reveals_identity`` — a reply names a model (its spec's name parts such as ``smollm2``, or a
  well-known assistant or lab name): a rater who can tell which model wrote a reply is no longer
  blind (FastChat #1210).

``hhhlab elo`` reports how many comparisons each rule flags and fits the scores both with every
comparison and without the flagged ones; the data builder records the flags in each group's
metadata and drops flagged comparisons only when asked, counting them by rule. A rule whose
inputs are missing (JSONL comparisons without timings or texts) flags nothing and says so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RULES = ("too_fast", "one_side", "reveals_identity")

# Names a reply could reveal itself by. A mention is flagged for a human to look at, not judged.
KNOWN_NAMES = ("SmolLM", "SmolLM2", "Hugging Face", "HuggingFace", "Llama", "LLaMA", "GPT-2", "GPT-3", "GPT-4",
               "ChatGPT", "OpenAI", "Claude", "Anthropic", "Mistral", "Qwen", "Gemma", "Gemini", "Bard")
_GENERIC = {"tiny", "random", "instruct", "chat", "base", "model", "models", "hidden", "layers", "heads", "seed",
            "distilled", "ckpt", "ckpts", "checkpoint", "checkpoints", "plain", "prompt", "vocab", "kv_heads",
            "home", "root", "work", "tmp", "main", "runs", "output", "outputs"}


@dataclass
class QcConfig:
    min_seconds: float = 3.0
    side_bias_min_n: int = 10
    side_bias_frac: float = 0.9
    identity_terms: tuple[str, ...] = ()


def identity_terms(model_specs: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """Words that would give a model away: name parts of its spec (``smollm2-135m`` ->
    ``smollm2``, ``smollm``), the well-known names, and ``extra``."""
    terms = set(KNOWN_NAMES) | {t.strip() for t in extra if t.strip()}
    for spec in model_specs:
        for part in re.split(r"[^A-Za-z0-9]+", spec.split("@")[0]):
            low = part.lower()
            if len(low) >= 4 and low[0].isalpha() and low not in _GENERIC and not re.fullmatch(r"[a-z]?\d+[a-z]?", low):
                terms.add(low)
                stem = low.rstrip("0123456789")
                if len(stem) >= 4 and stem not in _GENERIC:
                    terms.add(stem)
    return sorted(terms, key=str.lower)


def _pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alts = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alts})(?![A-Za-z])", re.IGNORECASE)


def flag(records: Sequence[Mapping[str, Any]], cfg: QcConfig, terms: Sequence[str] = ()) -> tuple[list[set[str]], dict[str, Any]]:
    """The rules each comparison trips, and a summary: per rule the count flagged (and whether the
    rule could run), plus the raters flagged by ``one_side``."""
    flags: list[set[str]] = [set() for _ in records]
    notes: dict[str, str] = {}
    # too fast
    timed = [i for i, r in enumerate(records) if r.get("rating_seconds") is not None]
    for i in timed:
        if float(records[i]["rating_seconds"]) < cfg.min_seconds:
            flags[i].add("too_fast")
    if not timed:
        notes["too_fast"] = "no rating times in the input: rule not applied"
    # one side
    by_rater: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("rater") is not None:
            by_rater.setdefault(str(r["rater"]), []).append(i)
    biased: dict[str, dict[str, Any]] = {}
    for rater, rows in by_rater.items():
        sides = Counter("A" if int(records[i]["rating"]) <= 4 else "B" for i in rows)
        side, top = sides.most_common(1)[0]
        if len(rows) >= cfg.side_bias_min_n and top / len(rows) >= cfg.side_bias_frac:
            biased[rater] = {"side": side, "share": top / len(rows), "n": len(rows)}
            for i in rows:
                flags[i].add("one_side")
    if not by_rater:
        notes["one_side"] = "no rater names in the input: rule not applied"
    # reveals identity
    pat = _pattern(terms)
    texts = [i for i, r in enumerate(records) if r.get("response_a") is not None or r.get("response_b") is not None]
    for i in texts:
        text = f"{records[i].get('response_a') or ''}\n{records[i].get('response_b') or ''}"
        if pat is not None and pat.search(text):
            flags[i].add("reveals_identity")
    if not texts:
        notes["reveals_identity"] = "no response texts in the input: rule not applied"
    counts = {rule: sum(rule in f for f in flags) for rule in RULES}
    summary = {"flagged": counts, "flagged_any": sum(bool(f) for f in flags), "n": len(records),
               "not_applied": notes, "one_side_raters": biased,
               "thresholds": {"min_seconds": cfg.min_seconds, "side_bias_min_n": cfg.side_bias_min_n,
                              "side_bias_frac": cfg.side_bias_frac}}
    return flags, summary
