"""Saving a matplotlib figure with a footnote (model caveats, how the CIs were made).

One rule for every figure the lab writes to a PNG, because a footnote cut off at the figure's
edge drops exactly the caveat a reader needs (which model, that it is instruction-tuned, that
``@Lk`` rungs are depth-truncations): the note is wrapped to the figure's width and the axes are
laid out above it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

CHARS_PER_INCH = 17  # at 7 pt
LINE_HEIGHT = 0.028  # of the figure's height, per footnote line


def save_with_note(fig, path: str | Path, note: str = "", *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (parents made) with ``note`` wrapped under the axes, and close it."""
    import matplotlib.pyplot as plt

    lines = textwrap.wrap(note, width=max(40, int(fig.get_figwidth() * CHARS_PER_INCH))) if note else []
    if lines:
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="#555", va="bottom")
    fig.tight_layout(rect=(0, 0.015 + LINE_HEIGHT * len(lines) if lines else 0, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
