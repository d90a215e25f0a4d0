"""Reddit comparisons in the Stanford Human Preferences (SHP / SHP-2) format, JSON Lines:
``post_id, domain, history, c_root_id_A/B, score_A/B, human_ref_A/B, labels, ...``.

The paper mined Pushshift dumps for pairs of comment threads that differ only in their final
comment, the one with more upvotes being better, formatted as::

    SUBMISSION by username: ...
    COMMENT by username: ...

SHP is the nearest public data: two top-level comments to one post with their scores. Our rules:
* context ``"SUBMISSION by user_1: {history}\\nCOMMENT by user_2:"`` and responses
  ``" " + comment``. SHP carries no usernames, so the aliases are fixed placeholders; both
  alternative comments use the same alias, so the context is shared and the alias says nothing
  about which comment is better;
* better = more upvotes (``score_A`` vs ``score_B``, the paper's rule); equal scores are skipped
  ("tie"). SHP's own ``labels`` (which also uses comment timing) is kept in the metadata;
* deleted or removed comments ("[deleted]", "[removed]") and bot comments (containing
  "I am a bot") are skipped, as the paper removes them;
* AmItheAsshole is always excluded (it overlaps ETHICS commonsense); ``--paper-subreddits``
  further keeps only the paper's whitelist (few SHP subreddits are in it);
* one group per SHP row; rows of one post share the context (so ``split_key`` keeps a post in
  one split). The paper's "two sequences per post" sampling is not applied: SHP is already a
  sample of pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Skip, map_jsonl
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz", "*.jsonl.bz2")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)

PAPER_SUBREDDITS = frozenset(s.lower() for s in (
    "tifu explainlikeimfive WritingPrompts changemyview LifeProTips todayilearned science askscience "
    "ifyoulikeblank UpliftingNews Foodforthought IWantToLearn bestof IAmA socialskills relationship_advice "
    "philosophy YouShouldKnow history books Showerthoughts personalfinance buildapc EatCheapAndHealthy "
    "boardgames malefashionadvice femalefashionadvice scifi Fantasy Games bodyweightfitness SkincareAddiction "
    "podcasts suggestmeabook AskHistorians gaming DIY mildlyinteresting sports space gadgets Documentaries "
    "GetMotivated technology Fitness travel lifehacks Damnthatsinteresting gardening programming").split())
EXCLUDED = frozenset({"amitheasshole"})
DELETED = frozenset({"[deleted]", "[removed]"})


def subreddit_of(domain: str) -> tuple[str, str | None]:
    """``"askculinary_train"`` -> ``("askculinary", "train")``."""
    name, sep, split = str(domain).rpartition("_")
    if sep and split in {"train", "validation", "test", "val", "dev"}:
        return name, split
    return str(domain), None


def _score(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"score must be a number, got {value!r}")
    return int(value)


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    def convert(obj: dict, where: str):
        subreddit, split = subreddit_of(obj["domain"])
        if subreddit.lower() in EXCLUDED:
            return Skip("subreddit excluded (overlaps ETHICS)")
        if options.reddit_paper_whitelist and subreddit.lower() not in PAPER_SUBREDDITS:
            return Skip("subreddit not in the paper's whitelist")
        history = obj["history"]
        comments = [obj["human_ref_A"], obj["human_ref_B"]]
        if not isinstance(history, str) or not all(isinstance(c, str) for c in comments):
            raise DataError("'history', 'human_ref_A' and 'human_ref_B' must be strings")
        if not history.strip():
            raise DataError("empty submission text")
        if any(c.strip() in DELETED for c in comments):
            return Skip("deleted comment")
        if any("i am a bot" in c.lower() for c in comments):
            return Skip("bot comment")
        scores = [_score(obj["score_A"]), _score(obj["score_B"])]
        if scores[0] == scores[1]:
            return Skip("tie")
        responses = [" " + c.strip() for c in comments]
        if responses[0] == responses[1]:
            return Skip("identical responses")
        return PreferenceGroup(
            id=f"reddit:{obj.get('post_id', '')}:{obj.get('c_root_id_A', '')}:{obj.get('c_root_id_B', '')}",
            context=f"SUBMISSION by user_1: {history.strip()}\nCOMMENT by user_2:",
            responses=responses, scores=scores, kind="ranked", source="reddit",
            metadata={"post_id": obj.get("post_id"), "subreddit": subreddit, "split": split,
                      "comment_ids": [obj.get("c_root_id_A"), obj.get("c_root_id_B")],
                      "shp_label": obj.get("labels")})

    yield from map_jsonl(path, convert)
