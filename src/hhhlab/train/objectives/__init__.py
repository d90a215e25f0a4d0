"""Training objectives as plug-ins: a registry of `Objective` classes by name.

Built in: ``imitation`` (IL), ``preference`` (PM, λ·L_PM + μ·L_LM), ``classifier``,
``language_model`` (plain texts); imported on first look-up (`PLUGIN_MODULES`): ``distillation``
(context distillation over a teacher cache, run by `hhhlab distill`) and ``prompt_finetune``
(LM on the prompt's text). Add one with::

    from hhhlab.train.objectives import Objective, register

    @register
    class MyObjective(Objective):
        name = "my_objective"
        ...

after which ``TrainConfig(objective="my_objective")`` and ``hhhlab pm train --objective
my_objective`` use it (the module must be imported first; built-ins and the modules listed in
`PLUGIN_MODULES` are imported on the first look-up, so that importing this package, as every
command's flags do through `TrainConfig`, costs no torch).
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hhhlab.train.objectives.base import LossTerm, Objective

OBJECTIVES: dict[str, type[Objective]] = {}
ALIASES = {"ranked": "preference", "pm": "preference", "il": "imitation", "lm": "language_model",
           "distill": "distillation", "prompt-finetune": "prompt_finetune"}  # `hhhlab distill --objective`'s names
#: objective modules imported on first look-up (not at package import: they build on the ones
#: above and on other areas of the lab). ``distill``: context distillation (``distillation``,
#: which trains on a teacher cache and so runs from `hhhlab distill`, and ``prompt_finetune``).
PLUGIN_MODULES: tuple[str, ...] = ("hhhlab.train.objectives.distill",)


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available as ``objective=cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no name")
    OBJECTIVES[cls.name] = cls
    return cls


def _load_plugins() -> None:
    _register_builtins()
    for mod in PLUGIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def canonical_name(name: str) -> str:
    n = str(name).lower()
    return ALIASES.get(n, n)


def objective_names() -> list[str]:
    _load_plugins()
    return sorted(OBJECTIVES)


def get_objective(name: str) -> type[Objective]:
    """The class registered as ``name`` (or an alias); KeyError lists the known ones."""
    _load_plugins()
    n = canonical_name(name)
    if n not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}: choose one of {', '.join(sorted(OBJECTIVES))}"
                       f" (aliases: {', '.join(f'{a}={b}' for a, b in sorted(ALIASES.items()))})")
    return OBJECTIVES[n]


@functools.cache
def _register_builtins() -> None:
    """On first look-up, not at import: the objectives need torch, and ``TrainConfig`` (hence
    every command's flags, and ``hhhlab --help``) imports this package."""
    from hhhlab.train.objectives.classifier import Classifier
    from hhhlab.train.objectives.imitation import Imitation
    from hhhlab.train.objectives.language_model import LanguageModel
    from hhhlab.train.objectives.preference import Preference

    for cls in (Imitation, Preference, Classifier, LanguageModel):
        OBJECTIVES.setdefault(cls.name, cls)  # an objective registered before under the same name wins


def __getattr__(name: str) -> Any:
    """``Objective`` and ``LossTerm`` on first use (they import torch)."""
    if name in ("LossTerm", "Objective"):
        from hhhlab.train.objectives import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["OBJECTIVES", "LossTerm", "Objective", "canonical_name", "get_objective", "objective_names", "register"]
