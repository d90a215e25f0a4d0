"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory ``ckpt-00000100/`` holds

* ``model.safetensors``     — every weight of the model being trained (trunk, head, LoRA);
* ``optimizer.safetensors`` — the optimizer's per-parameter state tensors as ``state.<i>.<name>``;
* ``rng.safetensors``       — the torch RNG state(s) as uint8 tensors;
* ``state.json``            — step, optimizer hyper-parameters, history, data counters, and the
  size and sha256 of each file above, written last.

It is written to a temporary directory and renamed, then ``latest.json`` is replaced
atomically, so a kill at any moment leaves the previous checkpoint valid. On load the sizes and
hashes are checked first: a truncated or corrupt file is a `StoreError` naming the file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_file, save_model

from hhhlab.errors import StoreError
from hhhlab.store import atomic_write_json, read_json, sha256_file
from hhhlab.train.preference_model import load_safetensors

TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")



def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Flatten ``optimizer.state_dict()`` into named tensors plus JSON-able param groups."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state.{idx}.{name}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           param_groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, *, keep: int = 2) -> Path:
    """Write ``root/ckpt-<step>`` atomically and point ``root/latest.json`` at it."""
    final = root / f"ckpt-{step:08d}"
    tmp = root / f".ckpt-{step:08d}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, groups = optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        files = {n: {"bytes": (tmp / n).stat().st_size, "sha256": sha256_file(tmp / n)} for n in TENSOR_FILES}
        atomic_write_json(tmp / "state.json", {**state, "step": step, "param_groups": groups, "files": files})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot write checkpoint {final}: {exc.strerror or exc}") from exc
    atomic_write_json(root / "latest.json", {"step": step, "path": final.name})
    for old in sorted(root.glob("ckpt-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The directory ``latest.json`` points at, or None when there is no checkpoint yet."""
    for stale in root.glob(".ckpt-*.tmp-*"):  # a save killed half-way
        shutil.rmtree(stale, ignore_errors=True)
    pointer = root / "latest.json"
    if not pointer.exists():
        return None
    info = read_json(pointer)
    path = root / str(info.get("path", ""))
    if not (path / "state.json").exists():
        raise StoreError(f"{pointer} points at {path}, which has no state.json (incomplete checkpoint)")
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Verify and restore a checkpoint into ``model`` (and ``optimizer``); returns its state dict."""
    state = read_json(path / "state.json")
    for name, meta in state.get("files", {}).items():
        f = path / name
        if not f.exists():
            raise StoreError(f"{f}: file not found (incomplete checkpoint)")
        size = f.stat().st_size
        if size != meta["bytes"]:
            raise StoreError(f"{f}: truncated or altered checkpoint file ({size} bytes, expected {meta['bytes']})")
        if sha256_file(f) != meta["sha256"]:
            raise StoreError(f"{f}: corrupt checkpoint file (sha256 mismatch)")
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise StoreError(f"{path / 'model.safetensors'}: cannot restore the model ({exc})") from None
    if missing or unexpected:
        raise StoreError(f"{path / 'model.safetensors'}: does not match the model being trained "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    if optimizer is not None:
        tensors = load_safetensors(path / "optimizer.safetensors")
        try:
            load_optimizer_tensors(optimizer, tensors, state["param_groups"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise StoreError(f"{path / 'optimizer.safetensors'}: does not match the optimizer ({exc})") from None
    rng = load_safetensors(path / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    return state
