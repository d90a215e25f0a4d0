"""OpenAI summarize-from-feedback comparisons (JSON Lines ``{info, summaries[2], choice, ...}``).

Each comparison becomes a ranked group: the chosen summary scores 1, the other 0.

Choices the paper leaves open, and ours:
* context, in the format of Stiennon et al. (2020): ``"SUBREDDIT: r/{subreddit}\\nTITLE: {title}\\n
  POST: {post}\\nTL;DR:"`` for Reddit TL;DR; for CNN/DM items (``info.article``)
  ``"ARTICLE: {title}\\n{article}\\nTL;DR:"``; each summary becomes ``" " + text.strip()``;
* the paper re-split its 93k pairs into 64k train / 29k test; we keep the release's ``split``
  and ``batch`` in the metadata and leave re-splitting to ``hhhlab data split`` (by post, so one
  post never spans two splits: ``split_key`` is the post id);
* several workers often judge the same pair; a second identical judgment is an exact duplicate
  and is dropped by the build's de-duplication (``--no-dedupe`` keeps them), while opposite
  judgments of one pair are both kept;
* comparisons of two identical summaries are skipped ("identical responses").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Skip, map_jsonl
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.json", "*.jsonl", "*.json.gz", "*.jsonl.gz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)


def format_context(info: dict) -> str:
    if not isinstance(info, dict):
        raise DataError("'info' must be an object")
    if info.get("post") is not None:
        return (f"SUBREDDIT: r/{info.get('subreddit', '')}\nTITLE: {info.get('title', '')}\n"
                f"POST: {str(info['post']).strip()}\nTL;DR:")
    if info.get("article") is not None:
        return f"ARTICLE: {info.get('title') or ''}\n{str(info['article']).strip()}\nTL;DR:"
    raise DataError("'info' has neither 'post' nor 'article'")


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    def convert(obj: dict, where: str):
        summaries = obj["summaries"]
        if not isinstance(summaries, list) or len(summaries) != 2:
            raise DataError("'summaries' must be a list of two summaries")
        choice = obj["choice"]
        if choice not in (0, 1) or isinstance(choice, bool):
            raise DataError(f"'choice' must be 0 or 1, got {choice!r}")
        texts = [" " + str(s["text"]).strip() for s in summaries]
        if texts[0] == texts[1]:
            return Skip("identical responses")
        info = obj["info"]
        context = format_context(info)
        post_id = str(info.get("id", ""))
        return PreferenceGroup(
            id=f"summarize:{path.stem}:{where.rsplit(':', 1)[1]}", context=context, responses=texts,
            scores=[1 if i == choice else 0 for i in range(2)], kind="ranked", source="summarize",
            metadata={"post_id": post_id, "split": obj.get("split"), "batch": obj.get("batch"),
                      "worker": obj.get("worker"), "policies": [s.get("policy") for s in summaries],
                      "confidence": (obj.get("extra") or {}).get("confidence"),
                      "split_key": f"summarize-post:{post_id}" if post_id else None})

    yield from map_jsonl(path, convert)
