"""Exceptions with messages a user can act on.

Every error we raise on bad input says *what* is wrong and *where* (file, line, item, model
name), so a researcher can fix the input without reading a traceback.
"""

from __future__ import annotations


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


def describe_validation_error(exc: Exception, default_field: str = "record", *, with_input: bool = False) -> str:
    """A pydantic ``ValidationError`` as one line, ``field: message; field: message`` (the one
    formatter every config, option and record validation uses, so they read alike);
    ``with_input`` adds the value given (``field='x': message``)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for e in errors():
        where = ".".join(map(str, e["loc"])) or default_field
        if with_input and e["loc"] and e.get("type") != "missing":
            where += f"={e.get('input')!r}"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)
