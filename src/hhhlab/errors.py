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
