"""``hhhlab elo``: comparisons (a database, or JSONL gathered elsewhere) -> QC flags -> Elo fits
with and without the flagged ones, every outcome method, the win table, figures, one results file.

JSONL input, one object a line: ``{"model_a": ..., "model_b": ..., "rating": 1-8}`` and
optionally ``condition_a``/``condition_b``, ``rater``, ``rating_seconds``, ``response_a``/
``response_b`` (which let the QC rules run) and ``non_embedding_params_a``/``_b`` (for Fig 9). A malformed line is an error naming the file and
line (up to five of them), before anything is fitted: nothing is dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hhhlab.errors import DataError
from hhhlab.feedback.config import EloConfig
from hhhlab.feedback.elo import METHODS, EloFit, fit_elo, win_table
from hhhlab.feedback.qc import QcConfig, flag, identity_terms

Record = dict[str, Any]


def read_comparisons_jsonl(path: str | Path) -> list[Record]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: comparisons file not found")
    out: list[Record] = []
    errors: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    errors.append(f"{path}:{lineno}: not a JSON object")
                    continue
                for key in ("model_a", "model_b"):
                    if not isinstance(obj.get(key), str) or not obj[key].strip():
                        raise ValueError(f"{key} must be a non-empty string")
                r = obj.get("rating")
                if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 8:
                    raise ValueError(f"rating {r!r} is outside the scale (integers 1 = A much better .. "
                                     "8 = B much better)")
                if obj["model_a"] == obj["model_b"] and obj.get("condition_a") == obj.get("condition_b"):
                    raise ValueError("a comparison needs two different systems")
                out.append(obj)
            except (json.JSONDecodeError, ValueError) as exc:
                errors.append(f"{path}:{lineno}: {exc}")
    if errors:
        more = f"; ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(f"{len(errors)} malformed comparison(s), nothing was fitted: " + "; ".join(errors[:5]) + more)
    return out


def load_records(cfg: EloConfig) -> tuple[list[Record], dict[str, dict[str, Any]]]:
    """``(comparisons, systems)``: systems maps a system name to its model, condition and size."""
    if bool(cfg.db) == bool(cfg.comparisons):
        raise DataError("give exactly one of --db URL and --comparisons FILE.jsonl")
    if cfg.comparisons:
        recs = read_comparisons_jsonl(cfg.comparisons)
        systems: dict[str, dict[str, Any]] = {}
        for r in recs:
            for side in ("a", "b"):
                cond = r.get(f"condition_{side}")
                name = r.setdefault(f"system_{side}", r[f"model_{side}"] + (f"/{cond}" if cond else ""))
                size = r.get(f"non_embedding_params_{side}")
                if isinstance(size, int | float) and size > 0:  # sizes let Fig 9 be drawn
                    systems[name] = {"model": r[f"model_{side}"], "condition": cond or "all",
                                     "non_embedding_params": int(size)}
        return recs, systems
    from hhhlab.feedback.db import FeedbackStore

    store = FeedbackStore(str(cfg.db), create=False)
    systems = {name: {"model": s.model, "condition": s.condition, "non_embedding_params": s.non_embedding_params,
                      **(s.info or {})} for name, s in store.systems().items()}
    return [c.to_record() for c in store.comparisons()], systems


def group_key(rec: Record, side: str, by: str) -> str:
    if by == "system":
        return str(rec[f"system_{side}"])
    if by == "model":
        return str(rec[f"model_{side}"])
    cond = rec.get(f"condition_{side}")
    if not cond:
        raise DataError("--by condition needs condition_a and condition_b in every comparison")
    return str(cond)


def analyze(cfg: EloConfig) -> dict[str, Any]:
    """Everything ``hhhlab elo`` reports (also written with ``--output``)."""
    records, systems = load_records(cfg)
    qc_cfg = QcConfig(cfg.min_seconds, cfg.side_bias_min_n, cfg.side_bias_frac,
                      tuple(t for t in cfg.identity_terms.split(",") if t.strip()))
    models = {r[f"model_{s}"] for r in records for s in "ab"}
    flags, qc = flag(records, qc_cfg, identity_terms(models, qc_cfg.identity_terms))
    battles, kept_flags = [], []
    same = 0
    for rec, f in zip(records, flags):
        a, b = group_key(rec, "a", cfg.by), group_key(rec, "b", cfg.by)
        if a == b:
            same += 1  # e.g. --by model: X/plain vs X/prompt says nothing about X
            continue
        battles.append((a, b, int(rec["rating"])))
        kept_flags.append(f)
    if not battles:
        raise DataError(f"no comparisons between two different {cfg.by}s to fit"
                        + (f" ({same} compare a {cfg.by} with itself)" if same else ""))
    def fit(rows: list[tuple[str, str, int]], method: str, anchor: str | None = cfg.anchor) -> EloFit:
        return fit_elo(rows, method=method, prior_sd=cfg.prior_sd, n_boot=cfg.n_boot, seed=cfg.seed, anchor=anchor)

    main = fit(battles, cfg.method)
    clean = [bt for bt, f in zip(battles, kept_flags) if not f]
    anchor_ok = cfg.anchor is None or any(cfg.anchor in bt[:2] for bt in clean)
    without = fit(clean, cfg.method, cfg.anchor if anchor_ok else None) if clean and len(clean) < len(battles) else None
    methods = {m: (main if m == cfg.method else fit(battles, m)) for m in METHODS}
    groups = _group_info(systems, cfg.by)
    return {
        "by": cfg.by, "method": cfg.method, "n_comparisons": len(records), "n_fitted": len(battles),
        "dropped_same_group": same, "elo": main.to_dict(), "elo_bootstrap_sd": main.boot_sd, "pm_loss": main.loss,
        "elo_without_flagged": without.to_dict() if without else None,
        "n_without_flagged": len(clean),
        "methods": {m: {"elo": f.to_dict(), "pm_loss": f.loss} for m, f in methods.items()},
        "win_table": win_table(battles), "qc": qc, "systems": groups,
        "prior_sd": cfg.prior_sd, "anchor": cfg.anchor, "n_boot": cfg.n_boot,
        "_fits": {"main": main, "without": without},
    }


def _group_info(systems: dict[str, dict[str, Any]], by: str) -> dict[str, dict[str, Any]]:
    """Size and condition of each fitted name (for Fig 9), where the database knows them."""
    if by == "system":
        return systems
    out: dict[str, dict[str, Any]] = {}
    for s in systems.values():
        key = s["model"] if by == "model" else s["condition"]
        cur = out.setdefault(key, {"condition": s["condition"] if by == "condition" else "all",
                                   "non_embedding_params": s.get("non_embedding_params") if by == "model" else None,
                                   "caveats": []})
        cur["caveats"] = sorted(set(cur["caveats"]) | set(s.get("caveats", [])))
    return out


def write_outputs(result: dict[str, Any], cfg: EloConfig) -> list[Path]:
    """The results document (``kind="elo"``) and the figures; returns the paths written."""
    from hhhlab.feedback.figures import plot_elo_vs_params, plot_win_table
    from hhhlab.results import write_results

    written: list[Path] = []
    fig_dir = Path(cfg.figures) if cfg.figures else (Path(cfg.output).parent if cfg.output else None)
    figures: list[str] = []
    if fig_dir is not None:
        stem = Path(cfg.output).name.removesuffix(".json") if cfg.output else "elo"
        names = sorted(result["elo"], key=lambda n: result["elo"][n]["value"] or 0)
        figures.append(str(plot_win_table(result["win_table"], fig_dir / f"{stem}.win_table.png", order=names)))
        caveats = [c for s in result["systems"].values() for c in s.get("caveats", [])]
        fig9 = plot_elo_vs_params(result["elo"], result["systems"], fig_dir / f"{stem}.elo_vs_params.png", caveats)
        if fig9:
            figures.append(str(fig9))
    result["figures"] = figures
    written += [Path(f) for f in figures]
    if cfg.output:
        fits: dict[str, EloFit | None] = result["_fits"]
        estimates = {f"elo/{n}": e for n, e in fits["main"].estimates.items()} if fits["main"] else {}
        if fits["without"]:
            estimates.update({f"elo_without_flagged/{n}": e for n, e in fits["without"].estimates.items()})
        payload = {k: v for k, v in result.items() if not k.startswith("_")}
        written.append(write_results(cfg.output, "elo", config=cfg.model_dump(), estimates=estimates,
                                     payload=payload))
    return written
