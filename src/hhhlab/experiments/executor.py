"""Where a study's cells run: in this process one after another (`SerialExecutor`), or as Ray
tasks on a cluster or a local Ray instance (`RayExecutor`), behind one interface.

A *cell* is one self-contained unit of a study (one model's eval suite, one sweep cell's
training run): a module-level function and its arguments, so that it can be shipped to another
process. The executor calls ``on_done(cell, result)`` **in the driver** as each cell finishes;
the caller records the result there (results store, results document), so a driver killed
half-way keeps every finished cell and a rerun skips them. Failed cells are retried a bounded
number of times; a cell that still fails is reported with its error and the other cells go on.

Ray specifics: each cell is a ``ray.remote`` task that requests ``num_gpus``/``num_cpus`` (a cell
that trains on several GPUs runs ``accelerate launch`` itself, on its node). Cells read and write
their working folders (training checkpoints, datasets) by path, so on a multi-node cluster the
study's output folder must be on a shared filesystem; the results themselves come back to the
driver.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hhhlab.errors import HHHLabError


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``fn(*args)`` (``fn`` importable at module level), with its resources."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    gpus: float = 0.0
    cpus: float = 1.0


@dataclass
class CellFailure:
    key: str
    error: str
    attempts: int


@dataclass
class ExecutionReport:
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[CellFailure] = field(default_factory=list)

    def raise_failures(self) -> None:
        if self.failures:
            lines = "; ".join(f"{f.key} ({f.attempts} attempts): {f.error.splitlines()[-1] if f.error else '?'}"
                              for f in self.failures)
            raise HHHLabError(f"{len(self.failures)} cell(s) failed after retries, the others are recorded "
                              f"(rerun to retry only the failed ones): {lines}")


OnDone = Callable[[Cell, Any], None]


class Executor:
    """Run cells; ``on_done`` is called in this process as each one finishes."""

    name = "executor"

    def run(self, cells: list[Cell], on_done: OnDone | None = None) -> ExecutionReport:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds (a Ray connection)."""


class SerialExecutor(Executor):
    """In this process, in order; a failing cell is retried ``max_retries`` times, then recorded."""

    name = "serial"

    def __init__(self, max_retries: int = 0):
        self.max_retries = max_retries

    def run(self, cells: list[Cell], on_done: OnDone | None = None) -> ExecutionReport:
        report = ExecutionReport()
        for cell in cells:
            for attempt in range(1, self.max_retries + 2):
                try:
                    result = cell.fn(*cell.args)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception:  # noqa: BLE001 - recorded, retried, reported
                    if attempt > self.max_retries:
                        report.failures.append(CellFailure(cell.key, traceback.format_exc(), attempt))
                    continue
                report.results[cell.key] = result
                if on_done:
                    on_done(cell, result)
                break
        return report


def _ray():
    try:
        import ray
    except ImportError:
        raise HHHLabError("--ray needs Ray: pip install 'hhhlab[ray]' (or pip install ray)") from None
    return ray


class RayExecutor(Executor):
    """Cells as Ray tasks on the cluster at ``address`` (``"local"``: start a local instance with
    ``num_cpus`` CPUs). Ray retries a failed task ``max_retries`` times (also when its worker
    dies); results are handed to ``on_done`` in the driver in the order they finish."""

    name = "ray"

    def __init__(self, address: str = "local", *, max_retries: int = 2, num_cpus: int | None = None,
                 connect_timeout_s: float = 30.0, local_start_attempts: int = 3, local_start_backoff_s: float = 2.0):
        ray = _ray()
        self.address, self.max_retries = address, max_retries
        self._owns = False
        local = address in ("local", "", None)
        if not local:
            self._check_reachable(address, connect_timeout_s)
        if not ray.is_initialized():
            try:
                if local:
                    _start_local_ray(ray, num_cpus, local_start_attempts, local_start_backoff_s)
                else:
                    ray.init(address=address, log_to_driver=False)
            except HHHLabError:
                raise
            except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError from ray
                raise HHHLabError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(exc)}") from None
            self._owns = True

    @staticmethod
    def _check_reachable(address: str, timeout_s: float) -> None:
        """Fail in seconds with a clear message instead of Ray's long retry loop."""
        import socket

        hostport = address.removeprefix("ray://")
        if address == "auto" or ":" not in hostport:
            return  # 'auto' and bare names are Ray's to resolve
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(timeout_s, 5.0)):
                pass
        except (OSError, ValueError) as exc:
            raise HHHLabError(f"cannot reach the Ray cluster at {address!r} ({exc}); start one with "
                              "`ray start --head` or pass --ray local") from None

    def run(self, cells: list[Cell], on_done: OnDone | None = None) -> ExecutionReport:
        ray = _ray()
        report = ExecutionReport()
        remote = ray.remote(_call)
        pending: dict[Any, Cell] = {}
        for cell in cells:
            ref = remote.options(num_cpus=cell.cpus, num_gpus=cell.gpus, max_retries=self.max_retries,
                                 retry_exceptions=True, name=f"hhhlab:{cell.key}"[:100]).remote(cell.fn, cell.args)
            pending[ref] = cell
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task failed after its retries
                    report.failures.append(CellFailure(cell.key, f"{type(exc).__name__}: {exc}",
                                                       self.max_retries + 1))
                    continue
                report.results[cell.key] = result
                if on_done:
                    on_done(cell, result)
        return report

    def close(self) -> None:
        if self._owns:
            _ray().shutdown()
            self._owns = False


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _start_local_ray(ray: Any, num_cpus: int | None, attempts: int, backoff_s: float) -> None:
    """Start a local Ray instance, retrying a failed start ``attempts - 1`` times with a doubling
    wait (``backoff_s``, then twice that, ...).

    Why: on a loaded machine the local instance's start (GCS, raylet, its ports and timeouts) now
    and then fails once and then comes up; that is a flake of this machine, not a bad input. A
    remote address is not retried here: its failure is the user's to fix and must be reported at
    once (`_check_reachable`). Each failed start is shut down so the next one begins clean."""
    import time

    for attempt in range(1, max(attempts, 1) + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds for a failed start
            if attempt >= attempts:
                raise HHHLabError(f"cannot start a local Ray instance (--ray local) after {attempt} attempt(s): "
                                  f"{_first_line(exc)}") from None
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001, S110 - a half-started instance may not shut down cleanly
                pass
            time.sleep(backoff_s * 2 ** (attempt - 1))


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


def make_executor(ray_address: str | None, *, max_retries: int = 2, num_cpus: int | None = None) -> Executor:
    """``None`` -> serial in this process; ``"local"`` or ``HOST:PORT`` / ``ray://HOST:PORT`` -> Ray."""
    if not ray_address:
        return SerialExecutor(max_retries=max_retries)
    return RayExecutor(ray_address, max_retries=max_retries, num_cpus=num_cpus)
