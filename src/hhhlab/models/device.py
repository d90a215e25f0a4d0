"""Automatic device and dtype choice.

bf16 is only a win where the hardware has native bf16 matmuls: on CPUs without AVX-512 BF16 or
AMX, PyTorch emulates bf16 and a matmul runs ~100x slower than fp32 (measured on an AVX2 EPYC:
0.85 vs 114 GFLOP/s). So "auto" checks the CPU flags rather than assuming.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hhhlab.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

# torch is imported where a device or dtype is resolved, not here: the CLI imports this module
# for DEFAULT_DTYPE while it builds its flags, and `hhhlab --help` should not wait for torch.
DTYPES = {  # accepted names -> the torch dtype's attribute name
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX), so ``auto`` picks bf16.

    ``HHHLAB_NATIVE_BF16=0`` (or ``1``) overrides the CPU flags: to keep fp32 on a bf16 CPU (the
    test suite does, so its numbers are the same on every CPU kind), or to force bf16."""
    forced = os.environ.get("HHHLAB_NATIVE_BF16", "").strip().lower()
    if forced in ("0", "false", "no"):
        return False
    if forced in ("1", "true", "yes"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str | None = "auto") -> torch.device:
    import torch

    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # Under a launcher each process takes its own GPU (accelerate, torchrun set LOCAL_RANK).
        local = os.environ.get("LOCAL_RANK")
        return torch.device(f"cuda:{int(local) % torch.cuda.device_count()}" if local and local.isdigit() else "cuda")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for, but this machine has no CUDA device")
    return dev


DEFAULT_DTYPE: Final = "auto"  # Final: a Literal["auto"] where a dtype Literal is expected
"""The one default dtype rule of ``eval``, ``pm train``/``pm eval`` and ``sweep``: ``auto``, which
`resolve_dtype` turns into bfloat16 where the hardware has native bf16 matmuls (CUDA with bf16,
CPUs with AVX-512 BF16/AMX) and float32 elsewhere."""


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | None = None) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        device = device or resolve_device()
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    try:
        return getattr(torch, DTYPES[str(dtype).lower()])
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}") from None
