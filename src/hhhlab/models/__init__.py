"""Model layer: loading (hub, local, embedded default, tiny random, size ladders), scoring, generation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hhhlab.models.load import LoadedModel, load_model, non_embedding_params

__all__ = ["LoadedModel", "load_model", "non_embedding_params"]


def __getattr__(name: str) -> Any:
    """The package's names on first use: importing a submodule (``hhhlab.models.device`` for the
    CLI's defaults) then costs no model-loading imports."""
    if name in __all__:
        from hhhlab.models import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
