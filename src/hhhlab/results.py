"""The result schema: the one shape every results JSON of the lab has, and its one reader.

Every command that writes results (``eval``, ``pm train``/``pm eval``, ``sweep``, ``distill``,
``pmp``, ``pm finetune``, ``elo``, ...) writes a *results document*:

.. code-block:: json

    {
      "schema": "hhhlab.results",
      "schema_version": 1,
      "kind": "eval",                      # which stage wrote it (see KINDS)
      "created": "2026-12-01T22:45:00+00:00",
      "provenance": {"code_version": "...", "machine": {...}, "models": [...], ...},
      "config": {...},                     # the resolved config of the run
      "estimates": {"hhh_alignment/plain/acc": {"value": 0.66, "lo": 0.60, "hi": 0.72,
                                                 "n": 221, "method": "bootstrap-percentile"}},
      "payload": {...}                     # the stage's own detail (tables, per-cell records, ...)
    }

* **Every estimate is one record** ``{value, lo, hi, n, method}`` (:class:`hhhlab.stats.Estimate`)
  wherever it appears — at the top level in ``estimates`` (flat, ``/``-separated keys, so a report
  can list and plot them without knowing the stage) and anywhere inside ``payload``.
  :func:`find_estimates` walks a payload and yields every record it holds.
* **A schema version on every file**: :func:`read_results` refuses a document of an unknown
  (newer) version with a message naming the file and both versions, and upgrades older ones.
  Legacy files written before this schema (plain metric dicts) are read as version 0: their
  estimate-shaped dicts (``value/lo/hi/n``) are recognised and given ``method="legacy"``.

Why one module: the report reads *only* this (never a stage's internals), so a new stage adds
a report section by writing a results document, and an old run directory either reads or says
why it cannot.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hhhlab.errors import HHHLabError, describe_validation_error
from hhhlab.stats import Estimate

SCHEMA_NAME = "hhhlab.results"
SCHEMA_VERSION = 1

#: The stages that write results documents; a report section is keyed by one of these.
KINDS = (
    "eval", "pm_train", "pm_eval", "sweep_objectives", "distill", "distill_compare", "pmp", "pm_finetune",
    "sweep_pmp", "sweep_pmp_synthetic", "sweep_rerank", "counting_toy", "elo", "benchmark", "demo",
)

_ESTIMATE_KEYS = frozenset({"value", "lo", "hi", "n"})


class SchemaError(HHHLabError):
    """A results document that cannot be read (unknown version, wrong shape): names the file."""


class EstimateRecord(BaseModel):
    """The typed form of an estimate inside a results document (mirrors ``stats.Estimate``)."""

    model_config = ConfigDict(extra="forbid")
    value: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str = "bootstrap-percentile"

    def to_estimate(self) -> Estimate:
        nan = float("nan")
        return Estimate(
            nan if self.value is None else self.value, nan if self.lo is None else self.lo,
            nan if self.hi is None else self.hi, self.n, self.method)


class ResultsDocument(BaseModel):
    """One results file: the envelope every stage writes (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    schema_: str = Field(SCHEMA_NAME, alias="schema")
    schema_version: int = SCHEMA_VERSION
    kind: str
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    provenance: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    estimates: dict[str, EstimateRecord] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _clean(self.model_dump(by_alias=True))


def estimate_dict(est: Estimate | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of an estimate: ``{value, lo, hi, n, method}`` with NaN as null."""
    d = est.to_dict() if isinstance(est, Estimate) else dict(est)
    d.setdefault("method", "bootstrap-percentile")
    return _clean({k: d[k] for k in ("value", "lo", "hi", "n", "method")})


def is_estimate(obj: Any) -> bool:
    """Whether a JSON value is an estimate record (it has value, lo, hi and n)."""
    return isinstance(obj, Mapping) and _ESTIMATE_KEYS <= set(obj)


def find_estimates(obj: Any, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every estimate record inside a JSON value, with its ``/``-joined path."""
    if is_estimate(obj):
        yield prefix, {**obj, "method": obj.get("method", "legacy")}
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from find_estimates(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from find_estimates(v, f"{prefix}/{i}" if prefix else str(i))


def code_version() -> str:
    """The installed hhhlab version plus the git commit of a source checkout, when there is one."""
    from hhhlab import __version__

    try:
        import subprocess

        root = Path(__file__).resolve().parents[2]
        if (root / ".git").exists():
            sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=5, check=False).stdout.strip()
            if sha:
                return f"{__version__}+g{sha}"
    except Exception:  # noqa: BLE001, S110 - provenance is best-effort, never a failure
        pass
    return __version__


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and flags that change speed, GPU, torch."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["avx512_bf16"] = "avx512_bf16" in cpuinfo
        info["amx"] = "amx_bf16" in cpuinfo
    except OSError:
        pass
    import os

    info["cpus"] = os.cpu_count()
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpus"] = torch.cuda.device_count()
    except ImportError:
        pass
    return info


def provenance(**extra: Any) -> dict[str, Any]:
    """Code version and machine, plus what the caller knows (models, data checksums, dtype...)."""
    return {"code_version": code_version(), "machine": machine_info(), **extra}


def make_results(kind: str, *, config: Mapping[str, Any] | None = None,
                 estimates: Mapping[str, Estimate | Mapping[str, Any]] | None = None,
                 payload: Mapping[str, Any] | None = None, **prov: Any) -> dict[str, Any]:
    """Build a results document (as JSON-ready dict) for ``kind``; ``prov`` goes to provenance."""
    if kind not in KINDS:
        raise SchemaError(f"unknown results kind {kind!r}; known: {', '.join(KINDS)}")
    doc = ResultsDocument(
        kind=kind, config=dict(config or {}), provenance=provenance(**prov),
        estimates={k: EstimateRecord(**estimate_dict(v)) for k, v in (estimates or {}).items()},
        payload=_clean(dict(payload or {})),
    )
    return doc.to_json()


def write_results(path: str | Path, kind: str, **kwargs: Any) -> Path:
    """Write a results document atomically (``store.atomic_write_json``) and return its path."""
    from hhhlab.store import atomic_write_json

    return atomic_write_json(path, make_results(kind, **kwargs))


def parse_results(data: Any, *, source: str = "<results>", kind: str | None = None) -> ResultsDocument:
    """Validate a loaded JSON value as a results document (upgrading legacy version-0 files)."""
    if not isinstance(data, Mapping):
        raise SchemaError(f"{source}: a results document is a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA_NAME:  # version 0: a plain metrics dict from before the schema
        doc = ResultsDocument(kind=kind or str(data.get("kind", "legacy")), schema_version=0,
                              payload=dict(data),
                              estimates={k: EstimateRecord(**estimate_dict(v)) for k, v in find_estimates(data)})
        return doc
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise SchemaError(f"{source}: results schema version {version!r}, this hhhlab reads versions 0 to "
                          f"{SCHEMA_VERSION} (upgrade hhhlab to read it)")
    try:
        doc = ResultsDocument.model_validate(dict(data))
    except ValidationError as exc:
        raise SchemaError(f"{source}: not a valid results document: {describe_validation_error(exc)}") from None
    if kind is not None and doc.kind != kind:
        raise SchemaError(f"{source}: a {doc.kind!r} results document, expected {kind!r}")
    return doc


def write_metrics(path: str | Path, kind: str, metrics: Mapping[str, Any], *,
                  config: Mapping[str, Any] | None = None, **prov: Any) -> Path:
    """Write a stage's flat metrics dict as a results document: its ``estimates`` entry (a map of
    estimate records, if any) becomes the document's estimates, the rest its payload. The
    inverse is `read_metrics`, so a stage keeps its dict API and its file the schema."""
    payload = {k: v for k, v in metrics.items() if k != "estimates"}
    estimates = metrics.get("estimates") or dict(find_estimates(payload))
    return write_results(path, kind, config=config, estimates=estimates, payload=payload, **prov)


def read_metrics(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """The flat metrics dict of a results document written by `write_metrics` (payload plus
    ``estimates``), or of a legacy metrics file (read as it is)."""
    doc = read_results(path, kind=kind)
    if doc.schema_version == 0:
        return dict(doc.payload)
    return {**doc.payload, "estimates": {k: v.model_dump() for k, v in doc.estimates.items()}}


def payload_of(data: Any, *, kind: str | None = None) -> dict[str, Any]:
    """A stage's own dict from a results file path, a results document (as JSON) or that dict
    itself (what figure functions take: a path, a document or a report all work; legacy too)."""
    if isinstance(data, str | Path):
        return read_results(data, kind=kind).payload
    if isinstance(data, Mapping) and data.get("schema") == SCHEMA_NAME:
        return parse_results(data, kind=kind).payload
    return dict(data)


def read_results(path: str | Path, *, kind: str | None = None) -> ResultsDocument:
    """Read any results file of the lab (see :func:`parse_results`); errors name the file."""
    from hhhlab.store import read_json

    return parse_results(read_json(path), source=str(path), kind=kind)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf floats become null (JSON has no NaN; a report shows them as n/a)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
