"""Where hhhlab keeps its caches and results, overridable by environment variables.

HHHLAB_HOME (default: $XDG_DATA_HOME/hhhlab or ~/.local/share/hhhlab) holds the results
database and run directories; HHHLAB_CACHE (default: $XDG_CACHE_HOME/hhhlab or
~/.cache/hhhlab) holds converted models and downloaded task files.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    if env := os.environ.get("HHHLAB_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hhhlab"


def cache_home() -> Path:
    if env := os.environ.get("HHHLAB_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hhhlab"
