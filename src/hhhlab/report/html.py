"""The HTML report: one self-contained file built from results documents, section by section.

``build_report(collection, path)`` renders every section of `report.sections.SECTIONS` from the
documents of its kinds, marks a section with no documents "not run / no data" (or "not available
in this version" when the stage's code is absent), lists every file it could not read and why,
and writes one HTML file: inline SVG figures, a little inline JavaScript to sort tables, and a
Content-Security-Policy that forbids every network request, so the file opens offline and
cannot phone home. Nothing is recomputed: the numbers are the documents' own.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from html import escape
from pathlib import Path

from hhhlab.report.collect import Collection, Source
from hhhlab.report.sections import SECTIONS, Section
from hhhlab.report.sections.base import Rendered, estimates_table
from hhhlab.results import code_version, machine_info
from hhhlab.store import atomic_write_text

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "font-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'")

#: The paper's figures (../shared/paper.md §7) that the lab's stages produce, and which section draws them.
PAPER_FIGURES = (
    ("2L", "HHH evals: plain, prompted, distilled vs size", "evals"),
    ("6L", "HHH evals by category", "evals"),
    ("6R", "TruthfulQA MC1", "evals"),
    ("7", "Lambada and its alignment tax", "evals"),
    ("8", "Toxicity on non-toxic and toxic prompts", "evals"),
    ("10", "HumanEval / QuixBugs alignment tax", "evals"),
    ("21", "TruthfulQA MC1 with various metrics", "evals"),
    ("23", "Expected max toxicity, probability of toxicity", "evals"),
    ("3", "PM − IL accuracy gain (ranked vs binary)", "pm_vs_il"),
    ("14", "HellaSwag / Learn to Summarize: PM vs IL", "pm_vs_il"),
    ("15", "ETHICS: PM vs IL", "pm_vs_il"),
    ("11", "Code correctness re-ranking: top-1 accuracy vs number of samples (the same layout on Lambada too)",
     "rerank"),
    ("12", "Code correctness with 2/8/32/96 samples: oracle, no ranking, IL, PM vs size", "rerank"),
    ("13", "Lambada correctness with k samples: oracle, no ranking, IL, PM, IL at T=0", "rerank"),
    ("17", "Fine-tuning curves with and without PMP", "pmp"),
    ("4", "Mean PMP gain over no PMP vs fine-tuning pairs", "pmp"),
    ("5", "Transfer at two reference sizes vs model size, with and without PMP", "pmp"),
    ("18", "Binarized over ranked PMP gain vs fine-tuning pairs", "pmp"),
    ("29", "PMP loss ablation: PM+LM vs PM only vs LM only", "pmp"),
    ("33", "Synthetic ranked vs binary PMP", "pmp"),
    ("9", "Elo from human preferences", "elo"),
    ("T2", "Head-to-head win rates", "elo"),
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px 60px;
color:#222;line-height:1.4}
h1{margin:.6em 0 .1em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta,.muted{color:#666;font-size:.9em} .warn{background:#fff4e0;border-left:4px solid #f0a030;padding:.4em .8em}
.status{display:inline-block;font-size:.75em;padding:.1em .5em;border-radius:8px;margin-left:.6em;vertical-align:middle}
.status.ok{background:#dff3df} .status.no-data,.status.not-available{background:#eee;color:#555}
.status.error{background:#fadcdc}
.paper,.measured{margin:.3em 0;padding:.3em .8em;border-left:4px solid #9ab} .measured{border-color:#4a4}
.figs{display:flex;flex-wrap:wrap;gap:14px} figure.fig{margin:0;border:1px solid #e3e3e3;padding:6px;max-width:572px}
figcaption{font-size:.8em;color:#555;max-width:560px}
svg.chart{max-width:100%;height:auto;background:#fff} svg .frame{fill:none;stroke:#999}
svg .grid{stroke:#eee} svg .zero{stroke:#000;stroke-width:.8} svg .tick{font-size:10px;fill:#555}
svg .al{font-size:11px;fill:#333} svg .ct{font-size:12.5px;font-weight:600} svg .lg{font-size:10.5px}
svg .pt:hover{r:6} svg .empty{fill:#999}
table.sortable{border-collapse:collapse;margin:1em 0;font-size:.85em} caption{text-align:left;font-weight:600;
padding:.3em 0} th,td{border:1px solid #ddd;padding:.2em .5em} th{background:#f4f4f4;cursor:pointer;
user-select:none} th.asc:after{content:" ▲"} th.desc:after{content:" ▼"} td.num{text-align:right;
font-variant-numeric:tabular-nums} tr:hover td{background:#f8fbff}
details.provenance{font-size:.78em;color:#444} details.provenance ul{padding-left:1.2em}
li.caveat{color:#8a4b00} pre{white-space:pre-wrap;max-height:18em;overflow:auto;background:#f7f7f7}
nav ul{columns:2} .shot{max-width:100%}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i], y=b.cells[i]; if(!x||!y) return 0;
        var u=x.getAttribute('data-sort'), v=y.getAttribute('data-sort');
        var c=(u!==null&&v!==null&&u!==''&&v!=='')?(parseFloat(u)-parseFloat(v)):
              x.textContent.localeCompare(y.textContent);
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
document.documentElement.setAttribute('data-ready','1');
"""


@dataclass
class SectionResult:
    section: Section
    status: str  # ok | no-data | not-available | error
    rendered: Rendered
    message: str = ""


def render_section(section: Section, sources: list[Source]) -> SectionResult:
    """One section; a section that fails to render is reported, never fatal to the report."""
    if not sources:
        if section.available():
            return SectionResult(section, "no-data", Rendered(),
                                 f"Not run / no data: the results store holds no {' or '.join(section.kinds)} "
                                 f"results for this report. To produce them: {section.how_to_run}")
        return SectionResult(section, "not-available", Rendered(),
                             "Not available in this version of hhhlab: the stage that produces it "
                             f"({section.stage_module}) is not installed.")
    skipped = [s for s in sources if s.doc.payload.get("skipped")]
    if skipped and len(skipped) == len(sources):
        return SectionResult(section, "no-data", Rendered(), "Not run: " + "; ".join(
            str(s.doc.payload["skipped"]) for s in skipped))
    sources = [s for s in sources if not s.doc.payload.get("skipped")]
    try:
        rendered = section.render(sources)
    except Exception as exc:  # noqa: BLE001 - one broken document must not cost the other sections
        return SectionResult(section, "error", Rendered(blocks=[estimates_table(sources, f"{section.id}-fallback")]),
                             f"This section could not draw its documents ({type(exc).__name__}: {exc}); "
                             "their estimates are listed instead.")
    if not any(f'data-table="{section.id}-estimates"' in b for b in rendered.blocks):
        every = estimates_table(sources, f"{section.id}-estimates")
        if every:  # nothing measured goes unshown, even what no figure draws
            rendered.blocks.append(f"<details class='estimates'><summary>every estimate of this section's "
                                   f"documents</summary>{every}</details>")
    message = "; ".join(f"not run: {s.doc.payload['skipped']}" for s in skipped)
    return SectionResult(section, "ok", rendered, message)


def _section_html(r: SectionResult) -> str:
    s = r.section
    parts = [(f'<section id="{s.id}" data-status="{r.status}"><h2>{escape(s.title)}'
              f'<span class="status {r.status}">{r.status.replace("-", " ")}</span></h2>'),
             f'<p class="paper"><b>What the paper found:</b> {escape(s.paper)}</p>']
    if r.status == "ok":
        parts.append(f'<p class="measured"><b>What we measured here:</b> {escape(r.rendered.measured or "see below")}'
                     "</p>")
    if r.message:
        parts.append(f'<p class="warn">{escape(r.message)}</p>')
    figs = [b for b in r.rendered.blocks if b.startswith("<figure")]
    rest = [b for b in r.rendered.blocks if not b.startswith("<figure") and b]
    if figs:
        parts.append('<div class="figs">' + "".join(figs) + "</div>")
    parts.extend(rest)
    parts.append("</section>")
    return "".join(parts)


def _coverage(results: list[SectionResult]) -> str:
    drawn = {f for r in results for f in r.rendered.figures}
    status = {r.section.id: r.status for r in results}
    rows = []
    for fid, what, sec in PAPER_FIGURES:
        state = "drawn" if fid in drawn else ("no data" if status.get(sec) in ("ok", "no-data") else
                                              status.get(sec, "?").replace("-", " "))
        rows.append(f'<tr data-fig="{fid}"><td>{fid}</td><td>{escape(what)}</td>'
                    f'<td><a href="#{sec}">{sec}</a></td><td>{state}</td></tr>')
    return ('<table class="sortable" data-table="coverage"><caption>The paper\'s figures and tables '
            '(../shared/paper.md §7) this lab draws</caption><thead><tr><th>paper</th><th>what</th>'
            '<th>section</th><th>here</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def build_html(collection: Collection, *, title: str = "hhhlab report", intro: str = "") -> tuple[str, list[SectionResult]]:
    claimed = {k for s in SECTIONS for k in s.kinds}
    results = [render_section(s, collection.of_kind(*s.kinds)) for s in SECTIONS]
    other = [s for s in collection.sources if s.kind not in claimed]
    m = machine_info()
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>")
    meta = (f"<h1>{escape(title)}</h1><p class='meta'>Built {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}"
            f" by hhhlab {escape(code_version())} on {escape(str(m.get('cpu', '?')))} from "
            f"{len(collection.sources)} results document(s); every number is the documents' own, with its 95% "
            "CI (hover a point for its value, interval and n; click a column to sort).</p>")
    body = [head, meta]
    if intro:
        body.append(f"<p>{escape(intro)}</p>")
    if collection.problems:
        body.append("<div class='warn' id='problems'><b>Not read:</b><ul>" + "".join(
            f"<li>{escape(p)}</li>" for p in collection.problems) + "</ul></div>")
    body.append("<nav><ul>" + "".join(
        f"<li><a href='#{r.section.id}'>{escape(r.section.title)}</a> <span class='status {r.status}'>"
        f"{r.status.replace('-', ' ')}</span></li>" for r in results) + "</ul></nav>")
    body.append(_coverage(results))
    body.extend(_section_html(r) for r in results)
    if other:
        body.append("<section id='other' data-status='ok'><h2>Other results</h2>"
                    + "".join(estimates_table([s], f"other-{i}", f"{s.kind}: {s.path}") for i, s in enumerate(other))
                    + "</section>")
    body.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(body), results


def build_report(collection: Collection, output: str | Path, *, title: str = "hhhlab report",
                 intro: str = "") -> tuple[Path, list[SectionResult]]:
    """Write the report to ``output`` (atomically) and return its path and per-section status."""
    text, results = build_html(collection, title=title, intro=intro)
    path = atomic_write_text(output, text)
    path.chmod(0o644)  # a report is for sharing (the atomic temp file is created 0600)
    return path, results
