"""Multi-turn framing: a conversation as the text a model continues (no torch: the data builder
uses it too). See ``systems.py`` for why the rest of the conversation is the assistant prefix."""

from __future__ import annotations

from collections.abc import Sequence

from hhhlab.errors import RequestError
from hhhlab.prompts import Prompt, format_query

Turns = Sequence[dict[str, str]]  # [{"role": "Human"|"Assistant", "text": ...}], alternating from Human


def frame_conversation(prompt: Prompt | None, turns: Turns, message: str) -> str:
    """The context a model continues: the conversation so far plus the new human message."""
    history = [*turns, {"role": "Human", "text": message}]
    if history[0]["role"] != "Human" or any(
            t["role"] != ("Human" if i % 2 == 0 else "Assistant") for i, t in enumerate(history)):
        raise RequestError("a conversation alternates Human and Assistant turns, starting with Human")
    space = prompt.space if prompt else " "
    rest = "".join(f"{space}{history[i + 1]['text']}\n\nHuman:{space}{history[i + 2]['text']}\n\nAssistant:"
                   for i in range(0, len(history) - 1, 2))
    return format_query(prompt, history[0]["text"], rest)
