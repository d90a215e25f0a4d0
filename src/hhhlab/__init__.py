"""hhhlab: a laboratory for aligning language assistants (Askell et al., 2021, and beyond)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Engine", "PreferenceModel", "ScoreRequest", "ScoreResult", "__version__", "load_model"]


def __getattr__(name: str):  # lazy: `import hhhlab` must stay fast for the CLI's --help
    if name == "load_model":
        from hhhlab.models.load import load_model

        return load_model
    if name in ("Engine", "ScoreRequest", "ScoreResult"):
        from hhhlab.models import engine

        return getattr(engine, name)
    if name == "PreferenceModel":
        from hhhlab.train.preference_model import PreferenceModel

        return PreferenceModel
    raise AttributeError(name)
