"""``hhhlab reproduce``: the typed study config (built-ins shipped in the package, errors that
name the key), a tiny study end to end, and resume after an interruption without redoing cells."""

from __future__ import annotations

import pytest

from hhhlab.errors import HHHLabError
from hhhlab.experiments import reproduce as rp

pytestmark = pytest.mark.usefixtures("one_thread")


def test_builtin_configs_ship_in_the_package_and_validate():
    names = rp.builtin_configs()
    assert {"paper-cpu", "paper-gpu", "paper-gpu-smollm2", "paper-gpu-qwen25"} <= set(names)
    for n in names:
        cfg = rp.load_study(n)
        assert cfg.models and cfg.evals is not None and cfg.pm_vs_il is not None
    gpu = rp.load_study("paper-gpu")
    assert "EleutherAI/pythia-12b" in gpu.models and gpu.ray.gpus_per_cell == 1
    assert "Qwen/Qwen2.5-14B" in rp.load_study("paper-gpu-qwen25").models
    for acc in ("ddp", "fsdp", "deepspeed"):
        path = rp.accelerate_config_file(acc)
        assert path.is_file() and "hhhlab/configs/accelerate" in str(path)


def test_bad_configs_name_the_key(tmp_path):
    with pytest.raises(HHHLabError, match=r"pm_vs_il\.bogus: unknown key"):
        rp.load_study("paper-cpu", sets=["pm_vs_il.bogus=1"])
    with pytest.raises(HHHLabError, match=r"evals\.limit: .*integer.*'many'"):
        rp.load_study("paper-cpu", sets=["evals.limit=many"])
    bad = tmp_path / "study.yaml"
    bad.write_text("models: x\nmodles: y\n")
    with pytest.raises(HHHLabError, match=rf"{bad}.*modles: unknown key"):
        rp.load_study(str(bad))
    with pytest.raises(HHHLabError, match="no built-in config of that name.*paper-cpu"):
        rp.load_study("paper-tpu")
    with pytest.raises(HHHLabError, match="batch_size"):
        rp.load_study("paper-cpu", {"batch_size": 0})
    # flags override the file, --set overrides nested keys
    cfg = rp.load_study("paper-cpu", {"seed": 3}, ["pm_vs_il.max_steps=4", "evals=null"])
    assert cfg.seed == 3 and cfg.pm_vs_il.max_steps == 4 and cfg.evals is None


def test_tiny_study_runs_and_resumes_without_redoing_cells(tmp_path):
    from report_run import tiny_study

    cfg = tiny_study(tmp_path)
    seen: list[str] = []

    def stop_after_two(cell):
        seen.append(cell.key)
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C between cells

    with pytest.raises(KeyboardInterrupt):
        rp.reproduce(cfg, on_cell=stop_after_two)
    out = tmp_path / "tiny"
    first = {k: rp.cell_doc(out, k).stat().st_mtime_ns for k in seen}
    result = rp.reproduce(cfg)
    assert result["planned"] == 2 + 4 and result["skipped"] == 2 and result["ran"] == 4
    assert not result["failures"]
    assert {k: rp.cell_doc(out, k).stat().st_mtime_ns for k in seen} == first  # not redone
    html = result["report"].read_text()
    assert 'data-paper-fig="2L"' in html and 'data-paper-fig="3"' in html
    again = rp.reproduce(cfg)
    assert again["skipped"] == again["planned"] and again["ran"] == 0


def test_missing_dataset_is_reported_and_the_rest_runs(tmp_path):
    from report_run import tiny_study

    cfg = tiny_study(tmp_path, "nodata", **{"pm_vs_il.datasets": "[hellaswag-nope]", "evals.evals": "[lambada]"})
    with pytest.raises(HHHLabError, match="unknown dataset 'hellaswag-nope'"):
        rp.reproduce(cfg)  # a misspelt name is bad input: an error before any work
    cfg = tiny_study(tmp_path, "nodata", **{"pm_vs_il.datasets": "[summarize]", "evals.evals": "[lambada]"})
    result = rp.reproduce(cfg)
    html = result["report"].read_text()
    assert "summarize" in html and "Not run" in html  # the section says why, the evals still ran
    assert 'id="evals" data-status="ok"' in html
