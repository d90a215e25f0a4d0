"""The PMP section's sweep figures (Figs 4, 5, 18, 29) and the pairs-saved table, from small
hand-made sweep documents: the numbers drawn are the ones worked out by hand here, the figures a
sweep's conditions do not allow are absent, and summary rows are not drawn as curve points."""

from __future__ import annotations

import math
import re

import pytest

from hhhlab.pmp.analysis import mean_gain_curve, pairs_saved, sweep_figure_plan
from hhhlab.report.collect import collect
from hhhlab.report.html import build_report
from hhhlab.results import write_results

PAIRS = 20
MODELS = ("tiny@L1", "tiny@L2")
TARGETS = ("cm", "hs")
# correct held-out pairs (of 20) per (condition, n); the second model is 2 better everywhere,
# target "hs" 1 better than "cm"
CORRECT = {"none": {0: 10, 32: 11, 128: 13}, "binarized": {0: 12, 32: 14, 128: 15},
           "ranked": {0: 11, 32: 12, 128: 14}, "pm_only": {0: 13, 32: 13, 128: 12}, "lm_only": {0: 10, 32: 11, 128: 13}}


def _point(model: str, target: str, cond: str, n: int) -> dict:
    k = CORRECT[cond][n] + 2 * MODELS.index(model) + (TARGETS.index(target) if target in TARGETS else 0)
    correct = [1.0] * k + [0.0] * (PAIRS - k)
    acc = k / PAIRS
    return {"n": n, "condition": cond, "target": target, "model": model, "pair_correct": correct,
            "accuracy": {"value": acc, "lo": acc - 0.1, "hi": acc + 0.1, "n": PAIRS, "method": "bootstrap"},
            "pm_loss": {"value": 0.69, "lo": 0.6, "hi": 0.8, "n": PAIRS, "method": "bootstrap"}}


def sweep_doc(path, conditions=tuple(CORRECT)) -> list[dict]:
    points = [_point(m, t, c, n) for m in MODELS for c in conditions for t in TARGETS for n in (0, 32, 128)]
    saved = []
    for m in MODELS:
        for t in TARGETS:
            base = [p for p in points if p["model"] == m and p["target"] == t and p["condition"] == "none"]
            for c in conditions:
                if c != "none":
                    pts = [p for p in points if p["model"] == m and p["target"] == t and p["condition"] == c]
                    saved += [{"model": m, "target": t, "condition": c, **r} for r in pairs_saved(pts, base, n_boot=50)]
    write_results(path / "results.json", "sweep_pmp", config={}, models=list(MODELS), payload={
        "points": points, "pairs_saved": saved, "mean_gain": {}, "figures": {}},
        estimates={f"{p['model']}|{p['condition']}|{p['target']}@{p['n']}": p["accuracy"] for p in points})
    return points


def _figures(html: str, fid: str) -> list[str]:
    return re.findall(rf'<figure class="fig" data-paper-fig="{fid}".*?</figure>', html, flags=re.DOTALL)


def _ys(fig: str, series: str) -> list[float]:
    g = re.search(rf'<g class="series" data-series="{re.escape(series)}">(.*?)</g>', fig, flags=re.DOTALL)
    assert g, series
    return [float(y) for y in re.findall(r'data-y="([^"]+)"', g.group(1))]


@pytest.fixture
def report(tmp_path):
    run = tmp_path / "sweep"
    run.mkdir()
    points = sweep_doc(run)
    path, results = build_report(collect([str(run)]), tmp_path / "r.html")
    assert {r.section.id: r.status for r in results}["pmp"] == "ok"
    return path.read_text(), points


def test_fig4_draws_the_mean_gain_over_targets_worked_out_by_hand(report):
    html, _ = report
    figs = _figures(html, "4")
    assert len(figs) == len(MODELS)  # one per model
    first = next(f for f in figs if "tiny@L1" in f)
    # binarized − none, the same for both targets: (12−10, 14−11, 15−13) / 20
    assert _ys(first, "binarized") == pytest.approx([0.10, 0.15, 0.10])
    assert _ys(first, "pm_only") == pytest.approx([0.15, 0.10, -0.05])
    assert _ys(first, "lm_only") == pytest.approx([0.0, 0.0, 0.0])


def test_fig4_interval_is_the_paired_standard_error_combined_over_targets():
    points = [_point("tiny@L1", t, c, 32) for t in TARGETS for c in ("none", "binarized")]
    (row,) = mean_gain_curve(points, "binarized")
    # per target: 3 of 20 pairs flip from wrong to right, so d = 1 on 3 pairs, 0 on 17
    d = [1.0] * 3 + [0.0] * 17
    mean = sum(d) / 20
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 19 / 20)
    half = 1.96 * math.sqrt(2 * se * se) / 2
    assert row["value"] == pytest.approx(0.15)
    assert (row["lo"], row["hi"]) == pytest.approx((0.15 - half, 0.15 + half))
    assert row["n_targets"] == 2


def test_fig18_has_each_target_light_and_the_mean_bold(report):
    html, _ = report
    fig = next(f for f in _figures(html, "18") if "tiny@L2" in f)
    assert _ys(fig, "cm") == pytest.approx([0.05, 0.10, 0.05])  # binarized − ranked
    assert _ys(fig, "hs") == pytest.approx([0.05, 0.10, 0.05])
    assert _ys(fig, "mean over targets") == pytest.approx([0.05, 0.10, 0.05])
    assert 'stroke-width="3.0"' in fig and 'opacity="0.4"' in fig


def test_fig29_is_the_loss_ablation_per_target(report):
    html, _ = report
    figs = _figures(html, "29")
    assert len(figs) == len(MODELS) * len(TARGETS)
    fig = next(f for f in figs if "tiny@L1: hs" in f)
    assert _ys(fig, "PM only (1, 0)") == pytest.approx([0.70, 0.70, 0.65])
    assert _ys(fig, "PM+LM (1, 1)") == pytest.approx([0.65, 0.75, 0.80])
    assert _ys(fig, "no PMP") == pytest.approx([0.55, 0.60, 0.70])
    assert "ranked" not in re.findall(r'data-series="([^"]+)"', fig)


def test_fig5_is_mean_transfer_at_the_two_reference_sizes_per_model(report):
    html, _ = report
    figs = _figures(html, "5")
    assert len(figs) == 2 and "Transfer at 32 fine-tuning pairs" in figs[0] and "at 128 fine-tuning" in figs[1]
    # none at 32: targets 11 and 12 of 20 (first model), 13 and 14 (second): means 0.575, 0.675
    assert _ys(figs[0], "none") == pytest.approx([0.575, 0.675])
    assert _ys(figs[1], "binarized") == pytest.approx([0.775, 0.875])
    assert "tiny@L1" in figs[0] and "tiny@L2" in figs[0]


def test_pairs_saved_table_and_summary_rows_not_drawn_as_points(report):
    html, points = report
    n_saved = len(MODELS) * len(TARGETS) * 4 * 3  # 4 PMP conditions x 3 sizes
    assert f'data-table="pmp-pairs-saved" data-rows="{n_saved}"' in html
    assert "more than (above every no-PMP point)" in html
    # every curve point once in the points table: the pairs-saved rows (which carry n, accuracy and
    # a condition) are not curve points
    assert f'data-table="pmp-points" data-rows="{len(points)}"' in html
    assert 'data-fig="4"><td>4</td><td>Mean PMP gain' in html and "<td>drawn</td></tr><tr data-fig=\"5\"" in html


def test_a_sweep_without_ranked_or_ablation_draws_neither_fig18_nor_fig29(tmp_path):
    run = tmp_path / "sweep"
    run.mkdir()
    points = sweep_doc(run, conditions=("none", "binarized"))
    assert sweep_figure_plan(points) == {"4": ["binarized"], "5": ["none", "binarized"]}
    html = build_report(collect([str(run)]), tmp_path / "r.html")[0].read_text()
    assert _figures(html, "4") and _figures(html, "5") and _figures(html, "17")
    assert not _figures(html, "18") and not _figures(html, "29")


def test_synthetic_sweeps_pairs_saved_table(tmp_path):
    run = tmp_path / "syn"
    run.mkdir()
    none = [{**_point("tiny@L1", "T0", "none", n), "condition": "No PM pretrain"} for n in (0, 32, 128)]
    binary = [{**_point("tiny@L1", "T0", "binarized", n), "condition": "Binary"} for n in (0, 32, 128)]
    write_results(run / "results.json", "sweep_pmp_synthetic", config={}, models=["tiny@L1"], payload={
        "points": none + binary, "pairs_saved_vs_no_pmp": {"Binary": pairs_saved(binary, none, n_boot=50)},
        "figures": {}}, estimates={f"{p['condition']}@{p['n']}": p["accuracy"] for p in none + binary})
    html = build_report(collect([str(run)]), tmp_path / "r.html")[0].read_text()
    assert 'data-table="pmp-pairs-saved" data-rows="3"' in html and _figures(html, "33")
    assert not _figures(html, "4")  # the sweep figures are the real-data sweep's


def test_the_sweeps_png_figures_follow_the_same_plan(tmp_path):
    pytest.importorskip("matplotlib")
    from hhhlab.report.pmp_figures import sweep_figures

    run = tmp_path / "sweep"
    run.mkdir()
    figs = sweep_figures(sweep_doc(run), tmp_path / "png")
    expected = {"fig5"} | {f"fig17:{m}" for m in MODELS} | {f"fig18:{m}" for m in MODELS} | {
        f"fig29:{m}" for m in MODELS} | {f"fig4:{m}:{c}" for m in MODELS for c in ("binarized", "ranked")}
    assert set(figs) == expected
    assert all((tmp_path / "png").joinpath(p).stat().st_size > 1000 for p in figs.values())
    only = sweep_figures(sweep_doc(run, conditions=("none", "binarized")), tmp_path / "png2")
    assert set(only) == {"fig5"} | {f"fig17:{m}" for m in MODELS} | {f"fig4:{m}:binarized" for m in MODELS}
