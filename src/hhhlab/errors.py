"""Exceptions with messages a user can act on.

Every error we raise on bad input says *what* is wrong and *where* (file, line, item, model
name), so a researcher can fix the input without reading a traceback.
"""

from __future__ import annotations

from typing import Literal


class HHHLabError(Exception):
    """Base class: the CLI prints these as one clean message, never a traceback."""


class ModelLoadError(HHHLabError):
    pass


class RequestError(HHHLabError):
    """A scoring or generation request that cannot be served (empty, too long, ...)."""


class DataError(HHHLabError):
    """Malformed input data; the message names the file and the line or record."""


class StoreError(HHHLabError):
    """The results store cannot read or write (disk full, read-only, corrupt file)."""


def describe_validation_error(exc: Exception, default_field: str = "record", *,
                              show_input: Literal["no", "inline", "after"] = "no") -> str:
    """A pydantic ``ValidationError`` as one line, ``field: message; field: message``: the one
    formatter every config, option and record validation uses, so their messages read alike.

    ``show_input`` adds the value given where it helps the reader find it: ``"inline"``,
    ``field='x': message`` (eval options, written ``key=value`` on the command line);
    ``"after"``, ``field: message (got 'x')``, and ``field: unknown key`` for a key the model
    forbids (config files and flags, where a misspelt key is the usual mistake). A missing
    field, or one whose input is a whole mapping, is shown without it."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for e in errors():
        where = ".".join(map(str, e["loc"])) or default_field
        msg, value = e["msg"], e.get("input")
        if show_input == "inline" and e["loc"] and e.get("type") != "missing":
            where += f"={value!r}"
        elif show_input == "after" and e.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif show_input == "after" and not isinstance(value, dict):
            msg += f" (got {value!r})"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
