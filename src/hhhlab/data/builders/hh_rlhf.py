"""Anthropic HH-RLHF (``{"chosen", "rejected"}`` whole dialogues, JSON Lines, often .jsonl.gz).

Each record becomes a group: the context is the shared dialogue up to and including the final
``"\\n\\nAssistant:"``; the two responses are the final assistant replies (they keep their leading
space, so ``context + response`` is the original transcript exactly). Chosen scores 1, rejected 0,
kind ``ranked`` (a human comparison).

Choices the data forces on us:
* the context ends at the last ``"\\n\\nAssistant:"`` inside the two dialogues' common prefix, not
  at the last one of each dialogue: about 0.4% of the test records have a reply that itself
  contains "Assistant:"/"Human:" turns, and cutting each at its own last turn would give two
  different contexts. A record with no shared assistant turn is rejected;
* a record whose final reply is empty (``" "``) is rejected by the schema's one rule for empty
  replies (docs/data.md), with its reason in the rejects file: 4 helpful-base test records have
  an empty rejected reply and 4 harmless-base test records an empty chosen one (8 of 4,666);
* a record whose two final replies are identical is skipped ("identical responses");
* the group id is ``hh-rlhf:<file stem>:<line>`` (the data has no ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Skip, map_jsonl
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.jsonl.bz2", "*.json", "*.json.gz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)
ASSISTANT = "\n\nAssistant:"


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(context, chosen_reply, rejected_reply)``; DataError if they do not share a context."""
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise DataError("'chosen' and 'rejected' must be strings")
    # The last assistant turn inside the common prefix: walk chosen's turns from the end and take
    # the first whose whole prefix rejected shares (string compares run in C; commonprefix did not).
    end = len(chosen)
    while True:
        i = chosen.rfind(ASSISTANT, 0, end)
        if i < 0:
            raise DataError("chosen and rejected share no dialogue up to an '\\n\\nAssistant:' turn")
        cut = i + len(ASSISTANT)
        if rejected.startswith(chosen[:cut]):
            break
        end = i
    return chosen[:cut], chosen[cut:], rejected[cut:]


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    stem = path.name.split(".")[0]
    folder = path.parent.name

    def convert(obj: dict, where: str):
        lineno = where.rsplit(":", 1)[1]
        context, good, bad = split_dialogue(obj["chosen"], obj["rejected"])
        if good.strip() == bad.strip():
            return Skip("identical responses")
        return PreferenceGroup(id=f"hh-rlhf:{folder}/{stem}:{lineno}", context=context,
                               responses=[good, bad], scores=[1, 0], kind="ranked", source="hh-rlhf",
                               metadata={"subset": folder, "file": path.name})

    yield from map_jsonl(path, convert)
