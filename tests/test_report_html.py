"""The HTML report from a tiny demo run: every section renders from results documents alone,
numbers carry their CIs, provenance and caveats are there, and bad input is named, not fatal."""

from __future__ import annotations

import json
import re

import pytest

from hhhlab.report.collect import collect
from hhhlab.report.html import build_report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from report_run import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("demo"))


def _status(results):
    return {r.section.id: r.status for r in results}


def test_tiny_run_renders_every_section_it_has_data_for(tiny_run, tmp_path):
    _, work, status, _ = tiny_run
    assert all(status[s] == "done" for s in ("sanity", "evals", "pm_vs_il", "distill", "pmp", "elo")), status
    path, results = build_report(collect([str(work)]), tmp_path / "r.html")
    st = _status(results)
    assert all(st[s] == "ok" for s in ("sanity", "evals", "pm_vs_il", "distill", "pmp", "elo")), st
    html = path.read_text()
    # the eval figures: HHH (Fig 2L), by category (6L), Lambada and its tax (7), each with points
    for fid in ("2L", "6L", "7"):
        assert f'data-paper-fig="{fid}"' in html
    assert 'data-paper-fig="3"' in html and 'data-paper-fig="15"' not in html
    assert 'data-paper-fig="33"' in html and 'data-paper-fig="9"' in html  # synthetic PMP, Elo
    assert 'data-chart="distill-kl"' in html and "heldout_kl_closed" in html
    assert 'data-table="elo-h2h-0"' in html
    charts = re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', html)
    assert charts and all(int(n) > 0 for _, n in charts), charts
    # every eval estimate of the document appears with its interval
    doc = json.loads((work / "evals" / "results.json").read_text())
    assert doc["schema"] == "hhhlab.results" and doc["kind"] == "eval"
    from hhhlab.report.svg import fmt

    for key, e in list(doc["estimates"].items())[:10]:
        assert f"{fmt(e['value'])} [{fmt(e['lo'])}, {fmt(e['hi'])}]" in html, key
    # provenance and the size-axis caveat of a depth ladder; no network reference anywhere
    assert "provenance" in html and "@Lk rungs are the first k blocks" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What the paper found" in html and "What we measured here" in html


def test_rerun_reuses_finished_stages(tiny_run):
    from hhhlab.demo import run_demo

    cfg, work, _, _ = tiny_run
    before = (work / "evals" / "results.json").read_text()
    status = run_demo(cfg, work)
    assert all(status[s] == "reused" for s in ("sanity", "evals", "pm_vs_il", "distill", "pmp")), status
    assert (work / "evals" / "results.json").read_text() == before


def test_other_schema_version_and_corrupt_files_are_named_and_the_rest_renders(tiny_run, tmp_path):
    _, work, _, _ = tiny_run
    bad = tmp_path / "future"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps({"schema": "hhhlab.results", "schema_version": 99, "kind": "eval"}))
    (bad / "broken.json").write_text('{"schema": "hhhlab.resu')
    coll = collect([str(work), str(bad), "no-such-run"])
    problems = "\n".join(coll.problems)
    assert "schema version 99" in problems and str(bad / "results.json") in problems
    assert "broken.json" in problems and "corrupt or truncated" in problems
    assert "'no-such-run'" in problems
    path, results = build_report(coll, tmp_path / "r.html")
    assert _status(results)["evals"] == "ok"
    assert "schema version 99" in path.read_text()


def test_empty_store_marks_every_section(tmp_path):
    from hhhlab.store import ResultsStore

    path, results = build_report(collect(store=ResultsStore(tmp_path / "store")), tmp_path / "r.html")
    assert all(r.status in ("no-data", "not-available") for r in results)
    html = path.read_text()
    assert "Not run / no data" in html and "hhhlab eval --model" in html


def test_report_cli_reads_the_store(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from hhhlab.cli import app

    _, work, _, home = tiny_run
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", "--runs", str(work), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and str(out.resolve()) in res.output
    # the store holds the eval stage's run (item-level results): the store-wide report finds it
    res = CliRunner().invoke(app, ["report", "--store", str(home), "--output", str(tmp_path / "all.html")])
    assert res.exit_code == 0, res.output
    assert 'data-paper-fig="2L"' in (tmp_path / "all.html").read_text()


def test_a_section_that_cannot_draw_falls_back_to_its_estimates(tmp_path):
    from hhhlab.report.collect import Collection, Source
    from hhhlab.results import parse_results

    doc = parse_results({"schema": "hhhlab.results", "schema_version": 1, "kind": "sweep_objectives",
                         "estimates": {"x/acc": {"value": 0.7, "lo": 0.6, "hi": 0.8, "n": 50}},
                         "payload": {"cells": [{"dataset": "d", "objective": "preference"}]}})
    path, results = build_report(Collection([Source(doc, tmp_path / "x.json")]), tmp_path / "r.html")
    assert _status(results)["pm_vs_il"] in ("ok", "error")
    assert "0.700 [0.600, 0.800]" in path.read_text()
