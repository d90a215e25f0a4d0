"""Storage faults (issue 6 item 4): each is a clear error naming the file, earlier results intact."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from hhhlab.errors import ModelLoadError, StoreError
from hhhlab.results import read_metrics
from hhhlab.store import ResultsStore, atomic_write_json


@contextlib.contextmanager
def small_tmpfs(path, size="64k"):
    """A real tiny filesystem (root only): the honest way to fill a disk in a test."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_full_disk_keeps_earlier_results(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        store = ResultsStore(disk / "store")
        run = store.create_run("eval", {"model": "tiny"})
        run.finish({"accuracy": 0.75})
        with pytest.raises(StoreError, match=r"big\.json"):
            atomic_write_json(run.path / "big.json", {"x": "y" * 200_000})
        assert read_metrics(run.path / "metrics.json")["accuracy"] == 0.75
        assert not list(run.path.glob(".*.tmp")), "a failed write must not leave its temp file behind"
        assert not (run.path / "big.json").exists()


def test_read_only_results_dir(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        store = ResultsStore(disk / "store")
        run = store.create_run("eval", {"model": "tiny"})
        run.finish({"accuracy": 0.5})
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(StoreError, match="store"):
            ResultsStore(disk / "store").create_run("eval", {"model": "tiny"})
        with pytest.raises(StoreError, match=r"metrics\.json"):
            run.finish({"accuracy": 0.9})
        assert read_metrics(run.path / "metrics.json")["accuracy"] == 0.5


def test_corrupt_index_database_is_named(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"runs\.sqlite"):
        ResultsStore(tmp_path)


def test_truncated_checkpoint_is_named(tmp_path, tiny_llama):
    ckpt = tmp_path / "ckpt"
    tiny_llama.model.save_pretrained(ckpt, safe_serialization=True)
    tiny_llama.tokenizer.save_pretrained(ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    from hhhlab.models.load import load_model

    with pytest.raises(ModelLoadError, match="ckpt"):
        load_model(str(ckpt))
