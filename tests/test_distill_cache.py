"""The teacher cache (distill/cache.py): contents, refusal of another run's cache, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hhhlab.distill.cache import (
    CacheKey,
    CacheMismatchError,
    TeacherCache,
    bytes_per_token,
    tokenizer_checksum,
)
from hhhlab.models.engine import Engine

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


def _windows(n=10, t=12, seed=0):
    return np.random.default_rng(seed).integers(3, 500, size=(n, t)).astype(np.int32)


def _key(lm, windows, k=5, **kw):
    base = CacheKey(teacher=TINY, prompt_version="p-1", prefix_checksum="abc", corpus_checksum="c" * 64,
                    n_windows=len(windows), context_length=windows.shape[1], k=k, dtype="float32",
                    tokenizer_checksum=tokenizer_checksum(lm.tokenizer), vocab_size=lm.model.config.vocab_size)
    return replace(base, **kw)


def test_cache_holds_the_engine_topk_and_reports_bytes(tmp_path, tiny_llama):
    windows = _windows()
    engine = Engine(tiny_llama, batch_size=4)
    prefix = list(range(10, 40))
    cache = TeacherCache.open(tmp_path / "c", _key(tiny_llama, windows), shard_size=4)
    assert cache.build(windows, lambda w: engine.topk_logprobs(prefix, w, 5)) == 3
    assert cache.complete and len(cache) == 10
    ref = engine.topk_logprobs(prefix, windows[7:8].tolist(), 5)[0]
    tokens, lp, ids = cache.window(7)
    assert tokens.tolist() == windows[7].tolist()
    assert torch.allclose(lp, ref[0]) and torch.equal(ids.long(), ref[1])
    assert bytes_per_token(50, "float32") == 404 and bytes_per_token(50, "float16") == 304
    # the files hold little beyond the arrays: within 5% of bytes_per_token (headers)
    assert cache.disk_bytes() <= 1.05 * windows.size * bytes_per_token(5, "float32") + 3 * 1024
    # a second build writes nothing: the cache is reused
    assert TeacherCache.open(tmp_path / "c", _key(tiny_llama, windows)).build(windows, lambda w: 1 / 0) == 0


@pytest.mark.parametrize("field,value,words", [
    ("prompt_version", "p-2", "prompt"), ("teacher", "other", "teacher"), ("k", 7, "top-k"),
    ("corpus_checksum", "d" * 64, "corpus"), ("tokenizer_checksum", "e" * 64, "tokenizer"),
])
def test_a_cache_from_another_run_is_refused(tmp_path, tiny_llama, field, value, words):
    windows = _windows()
    TeacherCache.open(tmp_path / "c", _key(tiny_llama, windows))
    with pytest.raises(CacheMismatchError, match=f"not reused: {words}"):
        TeacherCache.open(tmp_path / "c", _key(tiny_llama, windows, **{field: value}))


def test_windows_that_do_not_match_the_manifest_are_refused(tmp_path, tiny_llama):
    cache = TeacherCache.open(tmp_path / "c", _key(tiny_llama, _windows()))
    with pytest.raises(CacheMismatchError, match="shape"):
        cache.build(_windows(n=3), lambda w: [])


BUILD = """
import sys, time, numpy as np, torch
torch.set_num_threads(1)
from hhhlab.models.load import load_model
from hhhlab.models.engine import Engine
from hhhlab.distill.cache import TeacherCache, CacheKey, tokenizer_checksum
lm = load_model({tiny!r}, dtype="float32")
windows = np.random.default_rng(0).integers(3, 500, size=(12, 16)).astype(np.int32)
key = CacheKey(teacher="t", prompt_version="p", prefix_checksum="x", corpus_checksum="c", n_windows=12,
               context_length=16, k=6, dtype="float16", tokenizer_checksum=tokenizer_checksum(lm.tokenizer),
               vocab_size=lm.model.config.vocab_size)
engine = Engine(lm, batch_size=2)
slow = float(sys.argv[2])
def teacher(w):
    out = engine.topk_logprobs(list(range(10, 30)), w, 6)
    time.sleep(slow)
    return out
cache = TeacherCache.open(sys.argv[1], key, shard_size=2)
print("built", cache.build(windows, teacher, on_shard=lambda d, t: print("shard", d, flush=True)), flush=True)
"""


def _run(path: Path, slow: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", BUILD.format(tiny=TINY), str(path), str(slow)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_build_resumes_to_an_identical_cache(tmp_path):
    proc = _run(tmp_path / "killed", 0.4)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").glob("shard-*"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in (tmp_path / "killed").glob("shard-*"))
    assert 2 <= len(written) < 6, written  # killed part-way
    resumed = _run(tmp_path / "killed", 0.0)
    out, _ = resumed.communicate(timeout=300)
    assert f"built {6 - len(written)}" in out
    clean = _run(tmp_path / "clean", 0.0)
    clean.communicate(timeout=300)
    names = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "killed").iterdir())  # no temporary files left
    for name in names:
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes(), name
