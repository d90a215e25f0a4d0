"""Command-line flags generated from a pydantic config: one typed config is the single source
of a command's flags, YAML keys and defaults (the way ``hhhlab pm train`` does it for
`TrainConfig`, whose flag typing this reuses).

``config_flags(Model)`` gives one ``--field-name`` option per field (``--x/--no-x`` for bools),
each defaulting to None so that only the flags the user gave override a YAML file;
``build_config(Model, yaml_values, flags)`` merges and validates, turning a pydantic error into
one `HHHLabError` line that names each bad key.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from hhhlab.errors import HHHLabError
from hhhlab.train.cli import _option_type

M = TypeVar("M", bound=BaseModel)


def config_flags(model: type[BaseModel], *, exclude: tuple[str, ...] = (),
                 comma_lists: bool = False) -> list[inspect.Parameter]:
    """One typer option per field of ``model`` (``max_steps`` -> ``--max-steps``). List fields are
    left to the YAML file, or with ``comma_lists`` become one comma-separated flag that the
    field's own validator splits (``--sources a,b,c``)."""
    params = []
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        typ = _option_type(field.annotation)
        if comma_lists and typing.get_origin(typ) is list:
            typ = str
        if (typing.get_origin(typ) in (list, dict) or typ in (list, dict)
                or (isinstance(typ, type) and issubclass(typ, BaseModel))):
            continue  # structured fields come from the YAML file (or ``--set section.key=value``)
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if typ is bool else [flag]
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else ()
        default = "required" if field.is_required() else f"default: {field.default}"
        help_text = " ".join(x for x in [field.description or "", f"(one of: {', '.join(map(str, choices))})"
                                          if choices else "", f"({default})"] if x)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typ | None,
                                        default=typer.Option(None, *decls, help=help_text, show_default=False)))
    return params


def invalid_config(exc: ValidationError, where: str) -> HHHLabError:
    """A pydantic error as one line naming each bad key and why."""
    reasons = []
    for e in exc.errors():
        loc = ".".join(map(str, e["loc"])) or "config"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        reasons.append(f"{loc}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden"
                                          and not isinstance(e.get("input"), dict) else ""))
    return HHHLabError(f"invalid {where}: {'; '.join(reasons)}")


def build_config(model: type[M], base: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
                 *, where: str = "config") -> M:
    """``base`` (a YAML file's values) updated by the flags that were given, validated."""
    values = {**(base or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_config(exc, where) from None
