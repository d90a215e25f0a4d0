"""Find the results documents a report is built from: runs in the results store, run
directories, or results files, each read through the one result schema (`hhhlab.results`).

Nothing here recomputes anything. A run directory holds its results document(s) as JSON files
next to ``config.json``; every JSON file that parses as a results document is taken (a document
of an unknown schema version or a corrupt file becomes a *problem* that names the file, and the
rest of the report still renders); a run that holds only a legacy ``metrics.json`` is read as
schema version 0 with the kind its store row records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hhhlab.errors import HHHLabError
from hhhlab.results import SCHEMA_NAME, ResultsDocument, parse_results
from hhhlab.store import ResultsStore, read_json

SKIP_FILES = {"config.json", "MANIFEST.json", "manifest.json"}


@dataclass(frozen=True)
class Source:
    """One results document and where it came from."""

    doc: ResultsDocument
    path: Path
    run_id: str | None = None

    @property
    def kind(self) -> str:
        return self.doc.kind


@dataclass
class Collection:
    sources: list[Source] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that could not be read, and why

    def of_kind(self, *kinds: str) -> list[Source]:
        return [s for s in self.sources if s.kind in kinds]


def _read_dir(path: Path, run_kind: str | None, run_id: str | None, out: Collection) -> None:
    """Every results document in a run directory (top level and ``results/``)."""
    found = False
    files = sorted(p for pat in ("*.json", "results/*.json") for p in path.glob(pat) if p.name not in SKIP_FILES)
    for f in files:
        try:
            data = read_json(f)
        except HHHLabError as exc:
            out.problems.append(str(exc))
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            continue
        try:
            out.sources.append(Source(parse_results(data, source=str(f)), f, run_id))
            found = True
        except HHHLabError as exc:
            out.problems.append(str(exc))
            found = True  # the run has a document, just not one this version reads
    legacy = path / "metrics.json"
    if not found and legacy.exists() and run_kind:
        try:
            doc = parse_results(read_json(legacy), source=str(legacy), kind=run_kind)
            out.sources.append(Source(doc, legacy, run_id))
        except HHHLabError as exc:
            out.problems.append(str(exc))


def collect(runs: list[str] | None = None, *, store: ResultsStore | None = None) -> Collection:
    """The documents of ``runs`` (run ids, run directories or results files), or of every
    finished run in the store when ``runs`` is None."""
    out = Collection()
    store_rows: dict[str, dict] = {}
    if runs is None or any(not Path(r).exists() for r in runs):
        store = store or ResultsStore()
        store_rows = {r["run_id"]: r for r in store.runs()}
    if runs is None:
        for row in store_rows.values():
            _read_dir(Path(row["path"]), row["kind"], row["run_id"], out)
        return out
    for ref in runs:
        if not ref.strip():
            continue
        p = Path(ref).expanduser()
        if p.is_file():
            try:
                out.sources.append(Source(parse_results(read_json(p), source=str(p)), p))
            except HHHLabError as exc:
                out.problems.append(str(exc))
        elif p.is_dir():
            match = [r for r in store_rows.values() if Path(r["path"]) == p]
            _read_dir(p, match[0]["kind"] if match else None, match[0]["run_id"] if match else None, out)
            for sub in sorted(q for q in p.iterdir() if q.is_dir() and q.name != "results"):
                _read_dir(sub, None, None, out)  # a folder of stage directories (the demo's)
        elif ref in store_rows:
            row = store_rows[ref]
            _read_dir(Path(row["path"]), row["kind"], ref, out)
        else:
            known = ", ".join(list(store_rows)[-5:]) or "none"
            out.problems.append(f"--runs {ref!r}: no such file, directory or run id in the results store "
                                f"(latest runs: {known})")
    return out
