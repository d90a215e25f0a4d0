"""`hhhlab distill compare` on tiny models and tiny eval data: plain vs prompted vs distilled per
rung of a ladder, the fraction of the prompt's gain kept, the context cost, and the report."""

from __future__ import annotations

import pytest
from test_evals import PROMPT, make_data
from typer.testing import CliRunner

from hhhlab.cli import app
from hhhlab.results import read_results

pytestmark = pytest.mark.usefixtures("one_thread")
LADDER = "tiny:llama@L1,tiny:llama"
EVALS = "hhh_alignment,truthfulqa_mc1,lambada"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Eval data, a prompt, and one "student" per rung: the rung's weights, perturbed (any
    ordinary checkpoint that `load_model(DIR)` reads is what `hhhlab distill` saves)."""
    import torch

    from hhhlab.models.load import load_model

    root = tmp_path_factory.mktemp("compare")
    data = make_data(root / "data")
    (root / "prompt.txt").write_text(PROMPT)
    torch.manual_seed(0)
    for spec in LADDER.split(","):
        lm = load_model(spec, dtype="float32", device="cpu")
        with torch.no_grad():
            for p in lm.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        lm.model.save_pretrained(root / "ckpts" / f"{spec}-student")
        lm.tokenizer.save_pretrained(root / "ckpts" / f"{spec}-student")
    return root, data


def _args(root, data, out, **kw):
    args = {"--model": LADDER, "--distilled": str(root / "ckpts" / "{model}-student"), "--evals": EVALS,
            "--data-dir": str(data), "--prompt": str(root / "prompt.txt"), "--output": str(out),
            "--dtype": "float32", "--device": "cpu", "--batch-size": "4", "--n-boot": "200", **kw}
    return ["distill", "compare", *(x for kv in args.items() for x in kv), "--no-progress"]


def test_compare_over_a_ladder_writes_every_metric_the_fraction_kept_and_the_context_cost(setup, tmp_path):
    root, data = setup
    out = tmp_path / "compare.json"
    res = CliRunner().invoke(app, _args(root, data, out))
    assert res.exit_code == 0, res.output
    doc = read_results(out, kind="distill_compare")
    ladder = {e["model"]: e for e in doc.payload["ladder"]}
    assert set(ladder) == {"tiny:llama@L1", "tiny:llama"}
    suite = doc.payload["suite"]["results"]
    for model, entry in ladder.items():
        assert entry["distilled"] == str(root / "ckpts" / f"{model}-student")
        # both hhh_alignment scoring rules, under every condition, as estimate records
        for metric in ("acc", "acc_mi"):
            for cond in ("plain", "prompt", "distilled"):
                e = doc.estimates[f"{model}/{cond}/hhh_alignment/{metric}"]
                assert e.n == 6 and e.lo is not None and e.lo <= e.value <= e.hi
        assert {"truthfulqa_mc1", "lambada"} <= set(entry["metrics"])
        # the fraction kept is (distilled - plain) / (prompt - plain) of the per-item means
        per_item = {(r["condition"], r["eval"]): r for r in suite if r["model"] == model}
        defined = 0
        for ev, by_metric in entry["fraction_of_gain_kept"].items():
            for metric, frac in by_metric.items():
                m = {c: per_item[(c, ev)]["metrics"][metric]["value"] for c in ("plain", "prompt", "distilled")}
                gain = m["prompt"] - m["plain"]
                if abs(gain) > 1e-9:
                    defined += 1
                    assert frac["value"] == pytest.approx((m["distilled"] - m["plain"]) / gain, rel=1e-9)
                    assert entry["prompt_gain"][ev][metric]["value"] == pytest.approx(gain, abs=1e-9)
                else:
                    assert frac["value"] is None  # undefined, not an error
                assert frac["method"] == "paired-bootstrap"
        assert defined >= 1  # the formula was checked on at least one metric the prompt moved
        # lambada's log-prob always moves: its fraction is defined and in the flat estimates
        assert doc.estimates[f"{model}/lambada/logprob/fraction_of_gain_kept"].value is not None
        for ev in EVALS.split(","):
            cost = entry["context_cost"][ev]
            tok = cost["context_tokens_per_item"]
            # the prompt is what the student saves: every prompted context holds it
            assert tok["prompt"]["value"] - tok["distilled"]["value"] > 20
            assert cost["prompt_tokens_saved_per_item"]["value"] == pytest.approx(
                tok["prompt"]["value"] - tok["distilled"]["value"])
            for cond in ("plain", "prompt", "distilled"):
                assert cost["seconds_per_item"][cond] > 0
                assert cost["items_per_s"][cond] == pytest.approx(1 / cost["seconds_per_item"][cond])
    assert doc.config["dtype"] == "float32"
    assert {m["dtype"] for m in doc.payload["models"].values()} == {"float32"}
    assert "fraction kept" in res.output

    # the report finds the document in the results store, and its distill section shows it
    from hhhlab.report.collect import collect
    from hhhlab.report.sections.distill import DistillSection

    found = collect().of_kind("distill_compare")
    assert [s.doc.estimates for s in found] == [doc.estimates]
    rendered = DistillSection().render(found)
    assert "tiny:llama keeps" in rendered.measured and "hhh_alignment/acc_mi" in rendered.measured
    html = "".join(rendered.blocks)
    assert 'data-table="distill-compare"' in html and 'data-table="distill-context-cost"' in html
    assert 'id="fig-distill-fraction-kept"' in html
    rows = html.split('data-table="distill-compare"')[1].split("</table>")[0].count("<tr>") - 1
    assert rows == sum(len(m) for e in ladder.values() for m in e["metrics"].values())


def test_resume_redoes_nothing_and_dtype_auto_is_recorded(setup, tmp_path):
    root, data = setup
    out = tmp_path / "c.json"
    args = _args(root, data, out, **{"--model": "tiny:llama", "--distilled": str(root / "ckpts" / "tiny:llama-student"),
                                     "--evals": "lambada", "--dtype": "auto"})
    assert CliRunner().invoke(app, args).exit_code == 0
    first = read_results(out, kind="distill_compare")
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    again = read_results(out, kind="distill_compare")
    assert "resuming run" in res.output and again.payload["run_id"] == first.payload["run_id"]
    cost = again.payload["ladder"][0]["context_cost"]["lambada"]
    assert cost["n_resumed"] == cost["n_items"] == {"plain": 3, "prompt": 3, "distilled": 3}
    assert cost["seconds_per_item"] == {"plain": None, "prompt": None, "distilled": None}
    assert again.estimates["tiny:llama/prompt/lambada/acc"] == first.estimates["tiny:llama/prompt/lambada/acc"]
    from hhhlab.models.device import resolve_dtype

    want = str(resolve_dtype("auto")).removeprefix("torch.")
    assert {m["dtype"] for m in again.payload["models"].values()} == {want}


def test_a_ladder_with_one_checkpoint_or_bad_evals_is_refused_before_any_run(setup, tmp_path):
    from hhhlab.store import ResultsStore

    root, data = setup
    res = CliRunner().invoke(app, _args(root, data, tmp_path / "x.json", **{"--distilled": str(root / "one")}))
    assert res.exit_code != 0 and "put '{model}' in it" in str(res.exception)
    res = CliRunner().invoke(app, _args(root, data, tmp_path / "x.json", **{"--evals": "nope"}))
    assert res.exit_code != 0 and "unknown eval" in str(res.exception)
    res = CliRunner().invoke(app, _args(root, data, tmp_path / "x.json", **{"--dtype": "fp8"}))
    assert res.exit_code != 0 and "dtype" in str(res.exception)
    assert not ResultsStore().runs(kind="distill_compare") and not (tmp_path / "x.json").exists()
