"""Sweep cells as Ray tasks on a local Ray instance (``ray.init(num_cpus=2)``): the same results
as the serial run, bounded retries of failed cells, a clear error for an unreachable cluster."""

from __future__ import annotations

import json

import pytest

from hhhlab.errors import HHHLabError
from hhhlab.experiments import reproduce as rp
from hhhlab.experiments.executor import Cell, RayExecutor, SerialExecutor

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hhhlab[ray]')")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ray_local():
    import ray.cloudpickle as cp
    import report_run

    cp.register_pickle_by_value(report_run)  # the test helpers travel with the tasks
    ex = RayExecutor("local", num_cpus=2, max_retries=1)
    yield ex
    ex.close()


def _estimates(out):
    vals = {}
    for p in sorted((out / "cells").glob("*/results.json")):
        doc = json.loads(p.read_text())
        vals.update({k: (round(e["value"], 6), e["n"]) for k, e in doc["estimates"].items()})
    return vals


#: a stage cell (`experiments.stages`) travels to Ray like the eval and training cells
SYNTHETIC = {"pmp_synthetic.model": "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2",
             "pmp_synthetic.conditions": "[none, T2]", "pmp_synthetic.letters": "3", "pmp_synthetic.pmp_pairs": "32",
             "pmp_synthetic.sizes": "[0, 8]", "pmp_synthetic.eval_pairs": "20"}


def test_tiny_sweep_on_ray_matches_the_serial_run(tmp_path, ray_local):
    from report_run import tiny_study

    serial = rp.reproduce(tiny_study(tmp_path, "serial", **SYNTHETIC), executor=SerialExecutor())
    cfg = tiny_study(tmp_path, "ray", **SYNTHETIC)
    ray_local._owns = False  # the module fixture closes it
    on_ray = rp.reproduce(cfg, executor=ray_local)
    assert on_ray["planned"] == serial["planned"] == on_ray["ran"] and not on_ray["failures"]
    a, b = _estimates(tmp_path / "serial"), _estimates(tmp_path / "ray")
    assert a and a == b and "No PM pretrain@8" in a  # the synthetic PMP cell came back from Ray too
    # a driver restarted after the cells finished redoes none of them
    again = rp.reproduce(cfg, executor=ray_local)
    assert again["ran"] == 0 and again["skipped"] == again["planned"]
    assert 'data-paper-fig="3"' in on_ray["report"].read_text()


@pytest.mark.parametrize("kind", ["serial", "ray"])
def test_failed_cells_are_retried_then_reported(tmp_path, ray_local, kind):
    from report_run import flaky

    ex = ray_local if kind == "ray" else SerialExecutor(max_retries=1)
    cells = [Cell("ok", flaky, (str(tmp_path / "a"), 0, 1)), Cell("retried", flaky, (str(tmp_path / "b"), 1, 2)),
             Cell("broken", flaky, (str(tmp_path / "c"), 5, 3))]
    got = {}
    rep = ex.run(cells, lambda cell, result: got.__setitem__(cell.key, result))
    assert got == {"ok": 1, "retried": 2}
    assert [f.key for f in rep.failures] == ["broken"] and "flaky failure" in rep.failures[0].error
    assert int((tmp_path / "c").read_text()) == 2  # 1 try + 1 retry, bounded
    with pytest.raises(HHHLabError, match="1 cell\\(s\\) failed.*broken"):
        rep.raise_failures()


def test_unreachable_ray_address_is_a_clear_error():
    with pytest.raises(HHHLabError, match="cannot reach the Ray cluster at '127.0.0.1:9'"):
        RayExecutor("127.0.0.1:9")
    with pytest.raises(HHHLabError, match="cannot reach the Ray cluster at 'ray://127.0.0.1:9'"):
        rp.make_executor("ray://127.0.0.1:9")


class _FlakyRay:
    """Stands in for the ``ray`` module: ``init`` fails ``fails`` times, then succeeds; nothing
    real starts."""

    def __init__(self, fails: int):
        self.fails, self.inits, self.shutdowns = fails, [], 0

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)
        if len(self.inits) <= self.fails:
            raise RuntimeError("Failed to start the GCS server\nlong ray log ...")

    def shutdown(self):
        self.shutdowns += 1


def _fake_ray(monkeypatch, fails):
    from hhhlab.experiments import executor

    fake, sleeps = _FlakyRay(fails), []
    monkeypatch.setattr(executor, "_ray", lambda: fake)
    monkeypatch.setattr("time.sleep", sleeps.append)
    return fake, sleeps


def test_a_flaky_local_ray_start_is_retried_with_backoff(monkeypatch):
    fake, sleeps = _fake_ray(monkeypatch, fails=1)
    ex = RayExecutor("local", num_cpus=2)
    assert len(fake.inits) == 2 and fake.inits[-1]["num_cpus"] == 2
    assert fake.shutdowns == 1 and sleeps == [2.0] and ex._owns


def test_a_local_ray_that_never_starts_is_a_bounded_clear_error(monkeypatch):
    fake, sleeps = _fake_ray(monkeypatch, fails=99)
    with pytest.raises(HHHLabError, match=r"cannot start a local Ray instance \(--ray local\) after 3 "
                                          r"attempt\(s\): RuntimeError: Failed to start the GCS server$"):
        RayExecutor("local", local_start_attempts=3, local_start_backoff_s=0.5)
    assert len(fake.inits) == 3 and sleeps == [0.5, 1.0]


def test_an_unreachable_address_is_not_retried(monkeypatch):
    import time

    fake, sleeps = _fake_ray(monkeypatch, fails=99)
    t0 = time.monotonic()
    with pytest.raises(HHHLabError, match="cannot reach the Ray cluster at '127.0.0.1:9'"):
        RayExecutor("127.0.0.1:9")
    assert time.monotonic() - t0 < 5.0 and fake.inits == [] and sleeps == []


def test_a_remote_address_whose_connect_fails_is_reported_once(monkeypatch):
    import socket

    fake, sleeps = _fake_ray(monkeypatch, fails=99)
    with socket.create_server(("127.0.0.1", 0)) as srv:  # reachable, but not a Ray head
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        with pytest.raises(HHHLabError, match=f"cannot connect to the Ray cluster at '{address}': RuntimeError"):
            RayExecutor(address)
    assert [i["address"] for i in fake.inits] == [address] and sleeps == []
