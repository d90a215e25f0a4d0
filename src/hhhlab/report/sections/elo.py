"""Elo from human A/B comparisons (paper Fig 9, Table 2), from ``elo`` documents: one Elo score
per model or condition with its bootstrap CI, against non-embedding parameters when the document
records model sizes, and the head-to-head win-rate table.
"""

from __future__ import annotations

from typing import Any

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.sections.base import (
    Rendered,
    Section,
    as_estimate,
    ci_text,
    estimates_table,
    figure,
    point,
    table,
)

H2H_KEYS = ("head_to_head", "win_rates", "win_table", "wins")


def _params(payload: dict, name: str) -> int | None:
    for key in ("params", "non_embedding_params"):
        v = (payload.get(key) or {}).get(name)
        if isinstance(v, int | float):
            return int(v)
    for key in ("systems", "models"):  # the feedback stage records sizes per fitted name in "systems"
        m = (payload.get(key) or {}).get(name)
        if isinstance(m, dict) and m.get("non_embedding_params"):
            return int(m["non_embedding_params"])
    return None


def _rate(v: Any) -> Any:
    """A win-table cell: ``{"wins", "n", "rate"}`` shows as "0.62 (13/21)"; estimates and numbers as they are."""
    if isinstance(v, dict) and "rate" in v and "value" not in v:
        return f"{v['rate']:.2f} ({v.get('wins', '?')}/{v.get('n', '?')})"
    return v


def _h2h(payload: dict) -> tuple[list[str], dict[tuple[str, str], Any]] | None:
    """The win-rate table as (names, (row, col) -> value or estimate): dict of dicts or records."""
    for key in H2H_KEYS:
        t = payload.get(key)
        cells: dict[tuple[str, str], Any] = {}
        if isinstance(t, dict):
            for a, row in t.items():
                if isinstance(row, dict) and not as_estimate(row):
                    for b, v in row.items():
                        cells[(a, b)] = v
        elif isinstance(t, list):
            for r in t:
                if isinstance(r, dict):
                    a, b = r.get("model_a", r.get("row")), r.get("model_b", r.get("col"))
                    v = r.get("win_rate", r.get("rate", r.get("value")))
                    if a is not None and b is not None:
                        cells[(str(a), str(b))] = r if "value" in r and "lo" in r else v
        if cells:
            names = list(dict.fromkeys([a for a, _ in cells] + [b for _, b in cells]))
            return names, cells
    return None


class EloSection(Section):
    id = "elo"
    title = "Human preferences: Elo and head-to-head win rates"
    kinds = ("elo",)
    paper = ("Raters prefer larger prompted models: Elo rises linearly in log size from 197M to 13B and is flat "
             "to 52B; context-distilled and short-prompt models sit slightly below the full prompt (≈46–47% win "
             "rate against it); 100 Elo points ≈ a 64% win rate.")
    stage_module = "hhhlab.feedback"
    how_to_run = "hhhlab serve --models A,B  (collect comparisons), then hhhlab elo --db URL --output elo.json"

    def render(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        for i, s in enumerate(sources):
            p = s.doc.payload
            elo = {k: e for k, v in (p.get("elo") or {}).items() if (e := as_estimate(v)) is not None}
            if not elo:
                continue
            sized = {k: _params(p, k) for k in elo}
            if all(v for v in sized.values()) and len(set(sized.values())) > 1:
                pts = [q for k, e in elo.items() if (q := point(sized[k] or 1, e, k)) is not None]
                chart = svg.Chart("Elo fit from human preferences", "Non-embedding parameters", "relative Elo",
                                  [svg.Series("Elo", pts, "tab:blue")])
            else:
                names = list(elo)
                pts = [q for j, k in enumerate(names) if (q := point(j, elo[k], k)) is not None]
                chart = svg.Chart("Elo fit from human preferences", "", "relative Elo",
                                  [svg.Series("Elo", pts, "tab:blue", line=False)], xcategories=names)
            out.blocks.append(figure(chart, f"elo-{i}", [s], "9"))
            out.figures.append("9")
            out.blocks.append(table(["model", "non-emb params", "Elo [95% CI]", "comparisons"],
                                    [[k, sized[k], e, e.get("n")] for k, e in elo.items()],
                                    caption="Elo (base 10, scale 400)", table_id=f"elo-table-{i}"))
            h2h = _h2h(p)
            if h2h:
                names, cells = h2h
                rows = [[a, *[_rate(cells.get((a, b), "")) if a != b else "–" for b in names]] for a in names]
                out.blocks.append(table(["row beats column", *names], rows, caption="Head-to-head win rates",
                                        table_id=f"elo-h2h-{i}"))
                out.figures.append("T2")
            out.measured = "; ".join(f"{k} {ci_text(e)}" for k, e in elo.items())
        if not out.blocks:
            out.blocks.append(estimates_table(sources, "elo-estimates"))
        return out
