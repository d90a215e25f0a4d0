"""Elo from comparisons: known gaps recovered within their CIs from simulated raters, the same
fit as a plain logistic-regression Bradley–Terry, finite scores for a system that always wins,
the outcome methods, QC counts, JSONL input errors and the results document."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hhhlab.errors import DataError, HHHLabError
from hhhlab.feedback.elo import SCALE, expected_win_rate, fit_bt, fit_elo, outcomes, win_table

TRUE = {"200M": 0.0, "800M": 103.0, "3B": 177.0, "13B": 277.0}  # the paper's Fig 9 readings


def simulate(true: dict[str, float], n: int, seed: int = 0, *, slight: float = 0.4) -> list[tuple[str, str, int]]:
    """Raters who prefer the better system with the Bradley–Terry probability; how strongly they
    say so is drawn independently (``slight``: share of 'slightly better' ratings)."""
    rng = np.random.default_rng(seed)
    names = list(true)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        a_wins = rng.random() < expected_win_rate(true[a] - true[b])
        s = 1 if rng.random() < slight else int(rng.integers(2, 5))  # strength 1..4
        out.append((a, b, 5 - s if a_wins else 4 + s))
    return out


def test_100_elo_is_64_percent():
    assert expected_win_rate(100) == pytest.approx(0.640, abs=0.001)
    assert SCALE == pytest.approx(400 / math.log(10))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_known_gaps_within_ci(seed):
    battles = simulate(TRUE, 3000, seed)
    fit = fit_elo(battles, anchor="200M", n_boot=300, seed=seed)
    for name, true in TRUE.items():
        est = fit.estimates[name]
        assert est.lo <= true <= est.hi, (name, true, est)
        assert est.hi - est.lo < 80  # and the CIs are informative
    assert fit.estimates["200M"].value == 0.0
    assert fit.estimates["13B"].value > fit.estimates["3B"].value > fit.estimates["800M"].value


def test_ci_coverage_is_near_nominal():
    """Over 40 simulated studies, the 95% intervals cover the true gap about 95% of the time."""
    hits = 0
    for seed in range(40):
        fit = fit_elo(simulate({"a": 0.0, "b": 60.0}, 300, seed), anchor="a", n_boot=200, seed=seed)
        hits += fit.estimates["b"].lo <= 60.0 <= fit.estimates["b"].hi
    assert 33 <= hits <= 40


def test_agrees_with_sklearn_logistic_regression():
    sklearn = pytest.importorskip("sklearn.linear_model")
    battles = simulate(TRUE, 2000, 3)
    names = sorted(TRUE)
    idx = {n: i for i, n in enumerate(names)}
    X = np.zeros((len(battles), len(names)))
    for t, (a, b, _) in enumerate(battles):
        X[t, idx[a]], X[t, idx[b]] = 1.0, -1.0
    y = np.array([r <= 4 for *_, r in battles], float)
    prior_sd = 500.0
    # sklearn minimises ||w||^2 / 2 + C * sum(log-loss): our prior with variance C (in logits).
    lr = sklearn.LogisticRegression(C=(prior_sd / SCALE) ** 2, fit_intercept=False, tol=1e-12, max_iter=10_000)
    lr.fit(X, y)
    a = np.array([idx[x] for x, _, _ in battles])
    b = np.array([idx[x] for _, x, _ in battles])
    yy, w = outcomes([r for *_, r in battles])
    ours = fit_bt(a, b, yy, w, len(names), prior_sd=prior_sd)
    assert np.abs(ours - lr.coef_[0] * SCALE).max() < 1e-3


def test_agrees_with_unpenalised_irls():
    """A plain hand-written IRLS Bradley–Terry (no prior, first score pinned at 0)."""
    battles = simulate(TRUE, 2000, 4)
    names = sorted(TRUE)
    idx = {n: i for i, n in enumerate(names)}
    X = np.zeros((len(battles), len(names)))
    for t, (a, b, _) in enumerate(battles):
        X[t, idx[a]], X[t, idx[b]] = 1.0, -1.0
    X = X[:, 1:]  # pin names[0]
    y = np.array([r <= 4 for *_, r in battles], float)
    beta = np.zeros(X.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ beta))
        beta = beta + np.linalg.solve((X.T * (p * (1 - p))) @ X, X.T @ (y - p))
    a = np.array([idx[x] for x, _, _ in battles])
    b = np.array([idx[x] for _, x, _ in battles])
    yy, w = outcomes([r for *_, r in battles])
    ours = fit_bt(a, b, yy, w, len(names), prior_sd=math.inf)
    assert np.abs((ours - ours[0])[1:] - beta * SCALE).max() < 1e-6


def test_a_system_that_always_wins_gets_a_finite_score():
    battles = [("champ", "x", 1)] * 20 + [("x", "y", r) for r in (1, 2, 6, 7, 3)]
    fit = fit_elo(battles, n_boot=100)
    v = fit.estimates["champ"].value
    assert math.isfinite(v) and v > fit.estimates["x"].value + 200
    assert all(math.isfinite(e.hi) for e in fit.estimates.values())


def test_methods():
    r = np.array([1, 4, 5, 8])
    assert outcomes(r, "wins")[0].tolist() == [1, 1, 0, 0]
    assert outcomes(r, "half-ties")[0].tolist() == [1, 0.5, 0.5, 0]
    assert outcomes(r, "soft")[0].tolist() == pytest.approx([1, 4 / 7, 3 / 7, 0])
    y, w = outcomes(r, "strength")
    assert y.tolist() == [1, 1, 0, 0] and w.tolist() == pytest.approx([1.6, 0.4, 0.4, 1.6]) and w.sum() == 4
    with pytest.raises(ValueError, match="1 .A much better. to 8"):
        outcomes([0, 9])
    # Raters whose strength says nothing about the gap: every method recovers the same order and
    # wins/strength agree in expectation; half-ties and soft shrink the scale (ties pull to 50%).
    battles = simulate({"a": 0.0, "b": 150.0}, 4000, 5)
    gaps = {m: fit_elo(battles, method=m, anchor="a", n_boot=50).estimates["b"].value for m in
            ("wins", "half-ties", "soft", "strength")}
    assert all(g > 0 for g in gaps.values())
    assert abs(gaps["wins"] - 150) < 30 and abs(gaps["strength"] - 150) < 40
    assert gaps["soft"] < gaps["half-ties"] < gaps["wins"]


def test_win_table():
    t = win_table([("a", "b", 1), ("a", "b", 6), ("b", "a", 2)])
    assert t["a"]["b"] == {"wins": 1, "n": 3, "rate": pytest.approx(1 / 3)}
    assert t["b"]["a"]["wins"] == 2


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_elo_cli_on_jsonl_writes_the_result_schema(tmp_path):
    rows = [{"model_a": a, "model_b": b, "rating": r, "rater": f"r{i % 5}", "rating_seconds": 1.0 if i % 10 == 0 else 20.0,
             "response_a": "I am SmolLM, made by Hugging Face" if i % 25 == 0 else "hello", "response_b": "hi",
             "non_embedding_params_a": int(a[1]) * 10**6, "non_embedding_params_b": int(b[1]) * 10**6}
            for i, (a, b, r) in enumerate(simulate({"m1": 0.0, "m2": 100.0, "m3": 200.0}, 600, 7))]
    # one rater who always picks side A
    rows += [{"model_a": "m1", "model_b": "m3", "rating": 1, "rater": "lazy", "rating_seconds": 30.0} for _ in range(12)]
    src = _write(tmp_path / "c.jsonl", rows)
    out = tmp_path / "elo.json"
    p = cli("elo", "--comparisons", str(src), "--output", str(out), "--n-boot", "100", "--anchor", "m1")
    assert p.exit_code == 0, p.output
    from hhhlab.results import read_results

    doc = read_results(out, kind="elo")
    elo = doc.payload["elo"]
    assert set(elo) == {"m1", "m2", "m3"} and elo["m1"]["value"] == 0
    assert set(elo["m2"]) == {"value", "lo", "hi", "n", "method"}
    assert doc.estimates["elo/m3"].value == elo["m3"]["value"]
    qc = doc.payload["qc"]["flagged"]
    assert qc["too_fast"] == 60 and qc["one_side"] == 12 and qc["reveals_identity"] == 24
    assert doc.payload["n_without_flagged"] == 612 - doc.payload["qc"]["flagged_any"]
    assert set(doc.payload["elo_without_flagged"]) == {"m1", "m2", "m3"}
    assert set(doc.payload["methods"]) == {"wins", "half-ties", "soft", "strength"}
    assert doc.payload["win_table"]["m3"]["m1"]["n"] > 0
    assert "one_side: 12" in _flat(p.output) and "lazy" in _flat(p.output)  # reported, not silently dropped
    assert (tmp_path / "elo.win_table.png").stat().st_size > 1000
    assert (tmp_path / "elo.elo_vs_params.png").stat().st_size > 1000  # Fig 9 from the given sizes
    assert doc.payload["systems"]["m2"]["non_embedding_params"] == 2 * 10**6


def test_elo_cli_bad_input(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"model_a": "a", "model_b": "b", "rating": 9},
                                          {"model_a": "a", "model_b": "b", "rating": 3}])
    (tmp_path / "bad.jsonl").write_text((tmp_path / "bad.jsonl").read_text() + "{not json\n")
    p = cli("elo", "--comparisons", str(bad))
    msg = str(p.exception)
    assert isinstance(p.exception, DataError) and "bad.jsonl:1" in msg and "outside the scale" in msg
    assert "bad.jsonl:3" in msg and "nothing was fitted" in msg
    p = cli("elo", "--db", str(tmp_path / "none.sqlite"))
    assert isinstance(p.exception, HHHLabError) and "does not exist" in str(p.exception)
    p = cli("elo", "--comparisons", str(bad), "--method", "nope")
    assert isinstance(p.exception, HHHLabError) and "method" in str(p.exception) and "half-ties" in str(p.exception)


def test_read_comparisons_errors(tmp_path):
    from hhhlab.feedback.analysis import read_comparisons_jsonl

    with pytest.raises(DataError, match="not found"):
        read_comparisons_jsonl(tmp_path / "missing.jsonl")
    p = _write(tmp_path / "same.jsonl", [{"model_a": "a", "model_b": "a", "rating": 2}])
    with pytest.raises(DataError, match="two different systems"):
        read_comparisons_jsonl(p)


def _flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def cli(*args: str):
    """The hhhlab CLI in-process (a subprocess costs an import of torch on a busy machine)."""
    from typer.testing import CliRunner

    from hhhlab.cli import app

    return CliRunner().invoke(app, list(args))
