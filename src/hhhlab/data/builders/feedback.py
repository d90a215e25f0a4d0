"""Human A/B comparisons from ``hhhlab serve`` (``hhhlab data build feedback --db URL``).

Each stored comparison becomes one ranked group, ready for ``hhhlab pm train``:

* context = the conversation before the rated turn plus the rater's message, framed as a bare
  Human/Assistant exchange (``feedback.framing.frame_conversation`` without the prompt: the
  same framing as hh-rlhf and our distilled models), ending in ``"Assistant:"``;
* responses = the two replies, each with a leading space (``context + response`` reads as the
  transcript), in their on-screen order A, B;
* scores = the rating's strength for the preferred reply and 0 for the other: 1 (slightly
  better, ratings 4/5) to 4 (much better, 1/8). The margin is the strength, so a trainer that
  weights pairs by score margin can use it; only the order matters to the plain PM loss.

Rules that leave a comparison out, each counted by name in the build summary:

* ties: the 8-point scale has no tie, so the only tie is two identical replies ("identical
  responses": no preference to learn, as in the hh-rlhf builder). ``--min-strength 2`` also drops
  the "slightly better" ratings (4/5) as near-ties ("strength below 2");
* ``--exclude-flagged`` drops comparisons that a quality-control rule flags (``feedback.qc``:
  too fast, one-sided rater, identity-revealing reply), counted as ``qc: RULE``. Without it they
  are kept and their flags recorded in ``metadata["qc_flags"]``.

``metadata["split_key"]`` is the conversation id: the turns of one conversation share their
opening, so they go to one split together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hhhlab.data.build import BuildOptions, Item, Skip, guard
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.sqlite", "*.sqlite3", "*.db")


def check_options(options: BuildOptions) -> None:
    ms = options.extra.get("min_strength", 1)
    if not isinstance(ms, int) or not 1 <= ms <= 4:
        raise DataError(f"--min-strength must be 1 (keep all) to 4 (only 'much better'), got {ms!r}")


def input_files(path: Any) -> list[str]:
    """The database URL (or SQLite path) as the one "file"; an unopenable one is an error now."""
    from hhhlab.feedback.db import FeedbackStore, FeedbackStoreError, normalize_url

    url = normalize_url(path)
    try:
        FeedbackStore(url, create=False)
    except FeedbackStoreError as exc:
        raise DataError(str(exc)) from None
    return [url]


def to_group(rec: dict[str, Any], flags: set[str], min_strength: int = 1) -> PreferenceGroup | Skip:
    from hhhlab.feedback.db import strength
    from hhhlab.feedback.framing import frame_conversation

    a, b = rec["response_a"], rec["response_b"]
    if a.strip() == b.strip():
        return Skip("identical responses")
    s = strength(int(rec["rating"]))
    if s < min_strength:
        return Skip(f"strength below {min_strength}")
    scores = [float(s), 0.0] if rec["rating"] <= 4 else [0.0, float(s)]
    meta = {k: rec[k] for k in ("conversation_id", "rater", "turn_index", "rating", "chosen", "system_a", "system_b",
                                "model_a", "model_b", "condition_a", "condition_b", "comment", "rated_at")}
    return PreferenceGroup(
        id=f"feedback:{rec['uid']}", context=frame_conversation(None, rec["context"], rec["user_message"]),
        responses=[" " + a, " " + b], scores=scores, kind="ranked", source="feedback",
        metadata={**meta, "strength": s, "qc_flags": sorted(flags), "split_key": rec["conversation_id"]})


def build_file(path: Any, options: BuildOptions) -> Iterator[Item]:
    from hhhlab.feedback.db import comparison_records
    from hhhlab.feedback.qc import QcConfig, flag, identity_terms

    url = str(path) if "://" in str(path) else str(Path(path))
    records = comparison_records(url)
    flags, _ = flag(records, QcConfig(), identity_terms({r[f"model_{s}"] for r in records for s in "ab"}))
    exclude = bool(options.extra.get("exclude_flagged", False))
    min_strength = int(options.extra.get("min_strength", 1))
    for rec, f in zip(records, flags):
        if exclude and f:
            yield Skip(f"qc: {min(f)}")
            continue
        def convert(rec: dict[str, Any] = rec, f: set[str] = f) -> Item:
            return to_group(rec, f, min_strength)

        yield from guard(f"{url}#comparison={rec.get('id')}", rec, convert)
