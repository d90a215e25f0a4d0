"""`PreferenceModel`: a language model's trunk plus a scalar head read at the end-of-context token
(or, without a head, the causal LM alone: every objective's model is this one class).

The paper (§4.1, App. C.4) appends a special end-of-context (EOC) token to every sequence and
reads the preference score on top of it. We add a dedicated token, ``<|end_of_context|>``, to
the tokenizer and resize the embeddings (its row starts as the mean of the others, the
transformers default), so the EOC never collides with padding or EOS. The score is read at
positions computed while building the batch (`hhhlab.train.batching`), so it does not depend on
the pad token or the padding side.

The same class also serves models without a head — imitation learning (IL), language
modelling, distillation — whose score for a response is its mean per-token log-prob
(``scoring="mean_logprob"``); they get no head and no EOC token, so they stay the causal LM they
started as: one save format, one loader, one scorer for `hhhlab pm eval`.

Saved layout (``save_pretrained``): the LM as a Hugging Face checkpoint (``config.json`` +
``model.safetensors``) and the tokenizer — so ``load_model(DIR)`` loads any of them as an
ordinary causal LM — plus ``pm_config.json`` and, for head models, ``head.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hhhlab.errors import ModelLoadError, StoreError
from hhhlab.store import atomic_write_json, read_json
from hhhlab.train.batching import EOC_TOKEN, EncodedGroup, TreeBatch, build_batch, encode_group

SCORINGS = ("head", "mean_logprob")
FORMAT_VERSION = 1


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file is a StoreError naming it."""
    if not path.exists():
        raise StoreError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise StoreError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


class PreferenceModel(torch.nn.Module):
    """LM trunk + ``Linear(hidden, 1)`` head at the EOC token (``scoring="head"``), or the LM
    alone scoring by mean log-prob (``scoring="mean_logprob"``: no head, no EOC token)."""

    def __init__(self, lm: torch.nn.Module, tokenizer, *, scoring: str = "head", name: str = "",
                 max_length: int | None = None, extra: dict | None = None):
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
        self.lm: Any = lm  # a transformers PreTrainedModel (or a peft wrapper of one)
        self.tokenizer = tokenizer
        self.scoring = scoring
        self.name = name
        self.extra = dict(extra or {})
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        cfg: Any = lm.config  # a transformers config: per-architecture attributes
        self.head: torch.nn.Linear | None = None
        self.eoc_id: int | None = None
        if scoring == "head":
            self._add_eoc_token()
            hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
            self.head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
            torch.nn.init.zeros_(self.head.bias)
            self.head.to(device=next(lm.parameters()).device, dtype=torch.float32)
        window = next((getattr(cfg, a) for a in ("max_position_embeddings", "n_positions") if getattr(cfg, a, None)),
                      2048)
        self.max_length = int(min(max_length or window, window))
        self.train(lm.training)  # wrapping a model must not switch its dropout on (scoring restores this mode)

    def _add_eoc_token(self) -> None:
        """Give the tokenizer and embeddings the EOC token unless they have it (a warm start)."""
        tokenizer, lm = self.tokenizer, self.lm
        added = EOC_TOKEN not in tokenizer.get_vocab()
        if added:
            tokenizer.add_special_tokens({"additional_special_tokens": [EOC_TOKEN]})
        self.eoc_id = int(tokenizer.convert_tokens_to_ids(EOC_TOKEN))
        if lm.get_input_embeddings().weight.shape[0] <= self.eoc_id:
            lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        if added:  # the new EOC row (appended, or a spare row of a padded vocabulary) starts as the mean
            with torch.no_grad():  # embedding: deterministic, and no warning from transformers
                emb = lm.get_input_embeddings().weight
                emb[self.eoc_id] = emb[: self.eoc_id].mean(0)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_lm(cls, spec: str, *, scoring: str = "head", device: str = "auto", dtype: str = "float32",
                max_length: int | None = None) -> PreferenceModel:
        """A fresh model (random head when ``scoring="head"``) on any spec `load_model` accepts."""
        from hhhlab.models.load import load_model

        lm = load_model(spec, device=device, dtype=dtype)
        return cls(lm.model, lm.tokenizer, scoring=scoring, name=spec, max_length=max_length).eval()

    @property
    def trunk(self) -> Any:  # a transformers base model (per-architecture attributes)
        """The decoder without its LM head (``LlamaModel``, ``GPT2Model``, ...)."""
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return getattr(base, base.base_model_prefix)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # -- forward ----------------------------------------------------------------------------
    def hidden_states(self, batch: TreeBatch) -> torch.Tensor:
        """Final hidden states ``[B, T, H]`` of the tree rows (the trunk's final norm applied)."""
        trunk = self.trunk
        mask = batch.tree_mask
        if trunk.config._attn_implementation not in ("sdpa", "flex_attention"):
            dt = next(trunk.parameters()).dtype
            if torch.is_autocast_enabled(self.device.type):
                dt = torch.get_autocast_dtype(self.device.type)
            mask = torch.zeros(mask.shape, dtype=dt, device=mask.device).masked_fill_(~mask, torch.finfo(dt).min)
        out = trunk(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids,
                    use_cache=False)
        return out.last_hidden_state

    def head_scores(self, batch: TreeBatch, hidden: torch.Tensor) -> torch.Tensor:
        """Scalar score ``[R]`` of each response, read at its EOC position (fp32 head)."""
        if self.head is None:
            raise ValueError("this model has no head (scoring='mean_logprob')")
        h = hidden[batch.eoc_row, batch.eoc_col]
        return self.head(h.float()).squeeze(-1)

    def target_logits(self, batch: TreeBatch, hidden: torch.Tensor) -> torch.Tensor:
        """LM logits ``[N, V]`` (fp32) at the positions that predict each LM target token; the LM
        head runs only at those positions."""
        h = hidden[batch.lm_row, batch.lm_col]
        return self.lm.get_output_embeddings()(h).float()

    def token_logprobs(self, batch: TreeBatch, hidden: torch.Tensor) -> torch.Tensor:
        """log p of each LM target token ``[N]``."""
        logits = self.target_logits(batch, hidden)
        return torch.log_softmax(logits, dim=-1).gather(-1, batch.lm_target[:, None])[:, 0]

    def forward(self, batch: TreeBatch, *, head: bool = True, lm: bool = False, logits: bool = False
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One pass of the trunk: (head scores ``[R]`` or None, LM target log-probs ``[N]`` — or
        with ``logits=True`` the full logits ``[N, V]`` there — or None). Training goes through
        here so that DDP/FSDP wrappers see the forward call."""
        hidden = self.hidden_states(batch)
        lm_out = None
        if lm:
            lm_out = self.target_logits(batch, hidden) if logits else self.token_logprobs(batch, hidden)
        return (self.head_scores(batch, hidden) if head else None), lm_out

    def response_scores(self, batch: TreeBatch) -> torch.Tensor:
        """The score ``[R]`` the model ranks responses by: head score or mean token log-prob."""
        hidden = self.hidden_states(batch)
        if self.scoring == "head":
            return self.head_scores(batch, hidden)
        from hhhlab.train.losses import mean_logprob_scores

        return mean_logprob_scores(self.token_logprobs(batch, hidden), batch.lm_owner, len(batch.response_keys))

    # -- scoring API ------------------------------------------------------------------------
    def encode(self, context: str, responses: Sequence[str], scores: Sequence[float] | None = None,
               index: int = 0, group_id: str = "") -> EncodedGroup:
        scores = list(scores) if scores is not None else [0.0] * len(responses)
        return encode_group(self.tokenizer, context, responses, scores, max_length=self.max_length, index=index,
                            group_id=group_id)

    @torch.inference_mode()
    def score_encoded(self, groups: Sequence[EncodedGroup], *, batch_size: int = 16,
                      padding_side: str | None = None, progress: bool = False) -> list[list[float]]:
        """Scores of every response of every encoded group; ``batch_size`` = responses per forward.

        A group's context is encoded once for all the responses that share a forward pass."""
        from tqdm.auto import tqdm

        side = padding_side or str(getattr(self.tokenizer, "padding_side", "right"))
        rows: list[tuple[int, list[int]]] = []  # (group position, response indices)
        for gi, g in enumerate(groups):
            idx = list(range(len(g.responses)))
            rows += [(gi, idx[s : s + batch_size]) for s in range(0, len(idx), batch_size)]
        size = lambda r: len(groups[r[0]].context) + sum(len(groups[r[0]].responses[i]) + 1 for i in r[1])  # noqa: E731
        rows.sort(key=lambda r: -size(r))
        out: list[list[float]] = [[float("nan")] * len(g.responses) for g in groups]
        was_training = self.training
        self.eval()
        bar = tqdm(total=sum(len(r[1]) for r in rows), desc="scoring", disable=not progress, leave=False)
        start = 0
        while start < len(rows):
            batch_rows, n = [], 0
            while start < len(rows) and n + len(rows[start][1]) <= batch_size:
                batch_rows.append(rows[start])
                n += len(rows[start][1])
                start += 1
            subs = [EncodedGroup(index=k, context=groups[gi].context, responses=[groups[gi].responses[i] for i in idx],
                                 scores=[0.0] * len(idx)) for k, (gi, idx) in enumerate(batch_rows)]
            batch = build_batch(subs, eoc_id=self.eoc_id, pad_id=self.tokenizer.pad_token_id, responses="all",
                                lm="all" if self.scoring == "mean_logprob" else "none", padding_side=side)
            scores = self.response_scores(batch.to(self.device)).float().cpu().tolist()
            for (k, local), value in zip(batch.response_keys, scores):
                gi, idx = batch_rows[k]
                out[gi][idx[local]] = value
            bar.update(n)
        bar.close()
        self.train(was_training)
        return out

    def score(self, context: str, responses: Sequence[str], *, batch_size: int = 16) -> list[float]:
        """Scores of ``responses`` given one shared ``context`` (higher = preferred)."""
        return self.score_encoded([self.encode(context, responses)], batch_size=batch_size)[0]

    def score_groups(self, groups: Sequence[tuple[str, Sequence[str]]], *, batch_size: int = 16,
                     progress: bool = False) -> list[list[float]]:
        """Scores for many ``(context, responses)`` groups, batched across groups."""
        enc = [self.encode(c, r, index=i) for i, (c, r) in enumerate(groups)]
        return self.score_encoded(enc, batch_size=batch_size, progress=progress)

    # -- persistence ------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the LM (safetensors), tokenizer, head and ``pm_config.json`` to ``path``."""
        path = Path(path)
        lm = self.lm
        if hasattr(lm, "merge_and_unload"):  # LoRA: save plain merged weights
            lm = lm.merge_and_unload()
        try:
            path.mkdir(parents=True, exist_ok=True)
            lm.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)
            if self.head is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                          str(path / "head.safetensors"))
        except OSError as exc:
            raise StoreError(f"cannot save the preference model to {path}: {exc.strerror or exc}") from exc
        atomic_write_json(path / "pm_config.json", {
            "format_version": FORMAT_VERSION, "scoring": self.scoring, "eoc_token": EOC_TOKEN,
            "base_model": self.name, "max_length": self.max_length, **self.extra,
        })
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "auto", dtype: str = "float32") -> PreferenceModel:
        """Load a model saved by `save_pretrained` (clear errors for missing or corrupt files)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from hhhlab.models.device import resolve_device, resolve_dtype

        path = Path(path)
        cfg = read_json(path / "pm_config.json")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(f"{path / 'pm_config.json'}: unsupported format_version {cfg.get('format_version')}")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        for name in ("config.json", "model.safetensors"):
            if not (path / name).exists() and not list(path.glob("model-*.safetensors")):
                raise StoreError(f"{path / name}: file not found")
        try:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=dt, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, SafetensorError) as exc:
            raise StoreError(f"cannot load the model in {path}: {exc}") from None
        pm = cls(lm.to(dev), tok, scoring=cfg["scoring"], name=cfg.get("base_model", ""),  # type: ignore[arg-type]  # transformers' .to() wrapper
                 max_length=cfg.get("max_length"),
                 extra={k: v for k, v in cfg.items()
                        if k not in ("format_version", "scoring", "eoc_token", "base_model", "max_length")})
        if pm.head is not None:
            state = load_safetensors(path / "head.safetensors")
            try:
                pm.head.load_state_dict(state)
            except RuntimeError as exc:
                raise StoreError(f"{path / 'head.safetensors'}: does not match the model ({exc})") from None
        return pm.eval()

    @property
    def non_embedding_params(self) -> int:
        from hhhlab.models.load import non_embedding_params

        return non_embedding_params(self.lm)
