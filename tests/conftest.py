"""Shared fixtures: every test gets its own $HOME, results store and cache; tiny models only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a model or dataset hub (CI has none): fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# dtype "auto" is bf16 on CPUs with AVX-512 BF16 and fp32 elsewhere: tests compare numbers, so
# they run fp32 on every CPU kind (HHHLAB_NATIVE_BF16=1 python -m pytest runs them the bf16 way).
os.environ.setdefault("HHHLAB_NATIVE_BF16", "0")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# The user's model cache, found before any test changes $HOME: the converted default model is
# expensive to build, so the slow tests (the only ones that load it) share it.
USER_MODEL_CACHE = Path(
    os.environ.get("HHHLAB_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hhhlab"
)


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path_factory, monkeypatch):
    """Each test runs as a user on a fresh machine: its own empty $HOME, results store
    ($HHHLAB_HOME) and cache ($HHHLAB_CACHE, not created), so no default test depends on what the
    real ~ holds or on what an earlier test left. Slow tests share USER_MODEL_CACHE."""
    root = tmp_path_factory.mktemp("user")
    home = root / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    (root / "data").mkdir()
    monkeypatch.setenv("HHHLAB_HOME", str(root / "data"))
    slow = request.node.get_closest_marker("slow") is not None
    monkeypatch.setenv("HHHLAB_CACHE", str(USER_MODEL_CACHE if slow else root / "cache"))
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ../shared/data: optional, tests using it skip cleanly without it."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_llama():
    from hhhlab.models.load import load_model

    return load_model("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", dtype="float32")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from hhhlab.models.load import load_model

    return load_model("tiny:gpt2,layers=2,hidden=64,heads=4", dtype="float32")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they cost 10x.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
