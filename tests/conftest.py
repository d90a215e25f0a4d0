"""Shared fixtures: every test gets its own results store and cache; tiny models only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a model or dataset hub (CI has none): fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hhhlab_home")
    monkeypatch.setenv("HHHLAB_HOME", str(home))
    # The converted default model is expensive: share the user's cache unless a test overrides it.
    monkeypatch.setenv("HHHLAB_CACHE", os.environ.get("HHHLAB_CACHE", str(Path.home() / ".cache" / "hhhlab")))
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
