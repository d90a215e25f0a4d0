"""One module per source; each has ``PATTERNS`` (input file names it reads inside a folder) and
``build_file(path, options) -> Iterator[PreferenceGroup | Reject | Skip]`` (see data/build.py).

Each module's docstring states the paper's rule it follows and every choice the paper leaves
open; docs/data.md collects them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hhhlab.errors import DataError

SOURCES = {
    "stackexchange": "stackexchange",
    "reddit": "reddit",
    "wikipedia": "wikipedia",
    "hh-rlhf": "hh_rlhf",
    "summarize": "summarize",
    "ethics": "ethics",
    "hellaswag": "hellaswag",
    "truthfulqa": "truthfulqa",
    "code": "code",
    "feedback": "feedback",  # --db URL: comparisons from hhhlab serve
}


def get_builder(source: str) -> ModuleType:
    """The builder module for a source name (``hhhlab data build SOURCE``)."""
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of: {', '.join(SOURCES)}")
    return importlib.import_module(f"hhhlab.data.builders.{SOURCES[source]}")
