import json
import os

import numpy as np
import pytest

from hhhlab.errors import StoreError
from hhhlab.results import SCHEMA_VERSION, read_metrics
from hhhlab.stats import bootstrap, paired_difference, pass_at_k
from hhhlab.store import ResultsStore, atomic_write_json, read_json


def test_bootstrap_ci_contains_mean_and_is_seeded():
    x = np.r_[np.ones(70), np.zeros(30)]
    est = bootstrap(x)
    assert est.n == 100 and est.value == pytest.approx(0.7)
    assert est.lo < 0.7 < est.hi and est.hi - est.lo < 0.25
    assert bootstrap(x) == est


def test_paired_difference_detects_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    est = paired_difference(a + 0.5, a)
    assert est.value == pytest.approx(0.5) and est.lo == pytest.approx(0.5)


def test_pass_at_k_matches_combinatorics():
    from math import comb

    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 10), (5, 5, 2)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_store_roundtrip_and_resume(tmp_path):
    store = ResultsStore(tmp_path)
    run = store.create_run("eval", {"model": "tiny"}, run_id="r1")
    run.put_item("a", {"x": 1})
    run.put_item("a", {"x": 2})  # replace, never duplicate
    again = store.create_run("eval", {"model": "tiny"}, run_id="r1")
    assert again.items() == {"a": {"x": 2}}
    run.finish({"accuracy": 0.5})
    [rec] = store.runs("eval")
    assert rec["metrics"] == {"accuracy": 0.5} and rec["status"] == "finished"
    assert read_metrics(run.path / "metrics.json") == {"accuracy": 0.5, "estimates": {}}
    assert read_json(run.path / "metrics.json")["schema_version"] == SCHEMA_VERSION


def test_half_written_json_is_named(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"a": 1')
    with pytest.raises(StoreError, match="m.json.*truncated"):
        read_json(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_dir_is_a_clear_error(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    atomic_write_json(d / "keep.json", {"v": 1})
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            atomic_write_json(d / "new.json", {"v": 2})
    finally:
        d.chmod(0o700)
    assert json.loads((d / "keep.json").read_text()) == {"v": 1}


def test_bootstrap_in_blocks_gives_the_same_ci(monkeypatch):
    """Indices are drawn a block at a time (memory); the CI must not depend on the block size."""
    import numpy as np

    from hhhlab import stats

    x = np.random.default_rng(3).random(997)
    whole = stats.bootstrap(x, seed=5), stats.bootstrap(x, np.median, seed=5)
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 997 * 7)  # 7 rows per block: 286 blocks, ragged end
    assert (stats.bootstrap(x, seed=5), stats.bootstrap(x, np.median, seed=5)) == whole
