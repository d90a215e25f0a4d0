"""Command-line flags generated from a pydantic config: one typed config is the single source
of a command's flags, YAML keys and defaults (``hhhlab pm train`` for `TrainConfig`, and the
other commands alike).

``config_flags(Model)`` gives one ``--field-name`` option per field (``--x/--no-x`` for bools),
each defaulting to None so that only the flags the user gave override a YAML file;
``build_config(Model, yaml_values, flags)`` merges and validates, turning a pydantic error into
one `HHHLabError` line that names each bad key; ``comma_floats`` is the validator of a
list-of-numbers field that such a comma-separated flag feeds.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from hhhlab.errors import HHHLabError, describe_validation_error

M = TypeVar("M", bound=BaseModel)


def option_type(annotation: Any) -> Any:
    """The flag type typer understands for a field's annotation (Literal -> str, X | None -> X)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return str
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return option_type(args[0])
    return annotation


def comma_floats(value: Any) -> Any:
    """A list-of-numbers field's ``mode="before"`` validator: ``"1, 2.5,"`` -> ``[1.0, 2.5]`` (how
    such a field arrives from a ``comma_lists`` flag), ints of a YAML list as floats; any other
    value is left to the field's own type check."""
    if isinstance(value, str):
        try:
            return [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated numbers, not {value!r}") from None
    if isinstance(value, list):
        return [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in value]
    return value


def config_flags(model: type[BaseModel], *, exclude: tuple[str, ...] = (),
                 comma_lists: bool = False) -> list[inspect.Parameter]:
    """One typer option per field of ``model`` (``max_steps`` -> ``--max-steps``). List fields are
    left to the YAML file, or with ``comma_lists`` become one comma-separated flag that the
    field's own validator splits (``--sources a,b,c``)."""
    params = []
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        typ = option_type(field.annotation)
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


def build_config(model: type[M], base: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
                 *, where: str = "config") -> M:
    """``base`` (a YAML file's values) updated by the flags that were given, validated."""
    values = {**(base or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise HHHLabError(f"invalid {where}: {describe_validation_error(exc, 'config', show_input='after')}") from None
