"""Several processes (``accelerate launch`` or ``torchrun``) sharing one eval or one scoring job.

Why items, not tensors: evals and PM scoring split the *items* still to do between processes
(``shard``), each process scores its share with the ordinary engine, and the per-item results
are merged by key (``gather``). Because an item's result does not depend on which process or
batch computed it (the engine's batch-invariance contract), the metrics are the same for 1, 2 or
N processes, and a run killed under 2 processes resumes under 1 (or 4): the items already in the
results store are skipped whatever process stored them, and the rest are split anew.

Training has its own data-parallel loop (``train/trainer.py``, through ``accelerate``); this
module is for the embarrassingly parallel work. Without a launcher every function is the
one-process identity, and ``torch.distributed`` is never touched.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """True under a launcher that started more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@functools.cache
def _group() -> Any:
    """The default process group, initialised once from the launcher's environment (gloo on
    CPU, NCCL on GPUs); accelerate and torchrun set the variables it reads."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist


def rank() -> int:
    return _group().get_rank() if launched() else 0


def world_size() -> int:
    return _group().get_world_size() if launched() else 1


def is_main() -> bool:
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This process's share: every ``world_size``-th item from position ``rank``.

    Interleaving (rather than contiguous blocks) balances the work when item cost drifts along
    the list, e.g. a dataset sorted by length."""
    return list(items[rank() :: world_size()])


def gather(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order, on every process (one all-gather)."""
    if not launched():
        return [obj]
    out: list[Any] = [None] * world_size()
    _group().all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """The main process's ``obj``, on every process."""
    return gather(obj)[0] if launched() else obj


def barrier() -> None:
    if launched():
        _group().barrier()
