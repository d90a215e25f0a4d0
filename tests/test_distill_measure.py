"""fraction_of_gain_kept: the share of the prompt's gain a distilled model keeps, paired CI."""

from __future__ import annotations

import numpy as np

from hhhlab.distill.measure import fraction_of_gain_kept


def test_fraction_of_gain_kept_value_and_ci():
    rng = np.random.default_rng(0)
    n = 400
    plain = {str(i): float(rng.random() < 0.3) for i in range(n)}
    prompt = {str(i): float(rng.random() < 0.7) for i in range(n)}
    distilled = {i: plain[i] if rng.random() < 0.5 else prompt[i] for i in plain}  # keeps ~half the gain
    f = fraction_of_gain_kept(plain, prompt, distilled, n_boot=500)
    gain = np.mean(list(prompt.values())) - np.mean(list(plain.values()))
    kept = np.mean(list(distilled.values())) - np.mean(list(plain.values()))
    assert abs(f["value"] - kept / gain) < 1e-12 and f["n"] == n
    assert f["lo"] < f["value"] < f["hi"] and 0.3 < f["value"] < 0.7 and f["hi"] - f["lo"] < 0.4


def test_no_gain_is_undefined_not_an_error():
    same = {"a": 1.0, "b": 0.0}
    f = fraction_of_gain_kept(same, same, same, n_boot=50)
    assert np.isnan(f["value"]) and f["n_undefined"] == 50
