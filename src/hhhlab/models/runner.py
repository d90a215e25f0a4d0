"""Run a decoder's blocks ourselves, so suffixes can attend to a shared prefix K/V without copies.

Why not transformers' cache or attention-interface hooks: the shared-prefix decomposition needs,
in every layer, the suffix queries against (a) one prefix K/V shared by the whole batch and
(b) the suffixes' own keys, merged through log-sum-exps. A ``Cache`` object would force a
per-request copy of the prefix (the slow 20x path), and an attention-interface hook would have
to smuggle the prefix through kwargs and mutate the model's config for everyone holding it.
Running the blocks directly takes ~40 lines per architecture, uses only the model's own
submodules (so loaded weights, ``@L<k>`` ladders and dtypes just work), and gives exact control
over positions (RoPE continues after the prefix), GQA and padding.

Supported: Llama-family (``model_type == "llama"``: SmolLM2, Llama 2/3) and GPT-2. Anything
else goes through the engine's generic path (plain transformers forward, no prefix reuse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch

from hhhlab.models.attention import attention_with_lse, merge_attention, shared_prefix_attention

Tensor = torch.Tensor


@dataclass
class PrefixKV:
    """The keys and values of a shared prefix, per layer (kv_heads, P, head_dim), computed once."""

    tokens: list[int]
    keys: list[Tensor]
    values: list[Tensor]

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass
class SelfCache:
    """Per-row keys/values of the tokens after the prefix, preallocated for decoding."""

    keys: list[Tensor]  # per layer (B, kv_heads, T_max, head_dim)
    values: list[Tensor]
    valid: Tensor  # (B, T_max) bool: slot holds a real token
    length: int = 0  # slots written so far (same for every row)

    def select(self, rows: Tensor) -> SelfCache:
        """Keep only ``rows`` (drop finished samples, or repeat a prompt row for its samples)."""
        return SelfCache(
            keys=[k.index_select(0, rows) for k in self.keys],
            values=[v.index_select(0, rows) for v in self.values],
            valid=self.valid.index_select(0, rows),
            length=self.length,
        )


class BlockRunner:
    """Architecture adapter: embeddings, per-block q/k/v and output, final norm, LM head."""

    def __init__(self, model: Any):  # a transformers PreTrainedModel
        self.model = model
        # transformers' configs and submodules are per-architecture attributes (nn.Module's
        # __getattr__ types them Tensor | Module), hence Any here and for `base` below.
        cfg: Any = model.config
        self.num_heads: int = (
            cfg.num_attention_heads if hasattr(cfg, "num_attention_heads") else cfg.n_head
        )
        self.num_kv_heads: int = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        hidden = cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd
        self.head_dim: int = getattr(cfg, "head_dim", None) or hidden // self.num_heads
        self.lm_head = model.get_output_embeddings()

    # -- per-architecture pieces -------------------------------------------------------------------
    layers: torch.nn.ModuleList

    def embed(self, ids: Tensor, positions: Tensor) -> tuple[Tensor, object]:
        raise NotImplementedError

    def qkv(
        self, i: int, layer: torch.nn.Module, x: Tensor, extra: object
    ) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def finish(self, layer: torch.nn.Module, x: Tensor, attn: Tensor) -> Tensor:
        raise NotImplementedError

    def final_norm(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def scale(self, i: int) -> float:
        return self.head_dim**-0.5

    # -- the shared loop ----------------------------------------------------------------------------
    def _heads(self, t: Tensor, n: int) -> Tensor:
        b, s, _ = t.shape
        return t.view(b, s, n, self.head_dim).transpose(1, 2)

    def forward(
        self,
        ids: Tensor,
        positions: Tensor,
        *,
        prefix: PrefixKV | None = None,
        cache: SelfCache | None = None,
        mask: Tensor | None = None,
        collect: bool = False,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Hidden states (after the final norm) of ``ids`` at absolute ``positions``.

        Without ``cache`` the tokens attend causally to each other (right padding is then
        harmless: a real token never sees a later pad), or, given ``mask`` (B, 1, S, S), to the
        tokens it allows (tree rows: see ``attention.tree_attention_mask``). With ``cache`` they
        are written at the cache's next slots and attend to every slot ``mask`` (B, 1, S, T)
        allows. With ``prefix`` every token also attends to the whole shared prefix, unmasked,
        merged exactly via log-sum-exps.
        ``collect`` returns each layer's new (k, v), e.g. to keep a prefix.
        """
        x, extra = self.embed(ids, positions)
        s = ids.shape[1]
        kvs: list[tuple[Tensor, Tensor]] = []
        for i, layer in enumerate(self.layers):
            q, k, v = self.qkv(i, layer, x, extra)
            scale = self.scale(i)
            if cache is None:
                out, lse = attention_with_lse(q, k, v, scale=scale, causal=mask is None, mask=mask)
            else:
                end = cache.length + s
                cache.keys[i][:, :, cache.length : end] = k
                cache.values[i][:, :, cache.length : end] = v
                out, lse = attention_with_lse(
                    q,
                    cache.keys[i][:, :, :end],
                    cache.values[i][:, :, :end],
                    scale=scale,
                    mask=mask,
                )
            if prefix is not None:
                p_out, p_lse = shared_prefix_attention(
                    q, prefix.keys[i], prefix.values[i], scale=scale
                )
                out = merge_attention(p_out, p_lse, out, lse)
            if collect:
                kvs.append((k, v))
            x = self.finish(layer, x, out.transpose(1, 2).reshape(x.shape[0], s, -1))
        if cache is not None:
            cache.length += s
        return self.final_norm(x), kvs

    @torch.inference_mode()
    def encode_prefix(self, tokens: list[int], device: torch.device) -> PrefixKV:
        ids = torch.tensor([tokens], device=device)
        positions = torch.arange(len(tokens), device=device)[None]
        _, kvs = self.forward(ids, positions, collect=True)
        # Contiguous once here, rather than copied by the attention kernels for every batch.
        return PrefixKV(
            tokens=list(tokens),
            keys=[k[0].contiguous() for k, _ in kvs],
            values=[v[0].contiguous() for _, v in kvs],
        )

    def new_cache(
        self, batch: int, slots: int, device: torch.device, dtype: torch.dtype
    ) -> SelfCache:
        shape = (batch, self.num_kv_heads, slots, self.head_dim)
        return SelfCache(
            keys=[torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers],
            values=[torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers],
            valid=torch.zeros((batch, slots), dtype=torch.bool, device=device),
        )


class LlamaRunner(BlockRunner):
    def __init__(self, model: Any):  # a transformers PreTrainedModel
        super().__init__(model)
        self.base: Any = model.model
        self.layers = self.base.layers

    def embed(self, ids: Tensor, positions: Tensor) -> tuple[Tensor, object]:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        x = self.base.embed_tokens(ids)
        cos, sin = self.base.rotary_emb(x, positions)
        return x, (cos, sin, apply_rotary_pos_emb)

    def qkv(self, i, layer, x, extra):
        cos, sin, rope = extra
        h = layer.input_layernorm(x)
        attn = layer.self_attn
        q = self._heads(attn.q_proj(h), self.num_heads)
        k = self._heads(attn.k_proj(h), self.num_kv_heads)
        v = self._heads(attn.v_proj(h), self.num_kv_heads)
        q, k = rope(q, k, cos, sin)
        return q, k, v

    def finish(self, layer, x, attn):
        x = x + layer.self_attn.o_proj(attn)
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def final_norm(self, x):
        return self.base.norm(x)

    def scale(self, i: int) -> float:
        return float(cast(Any, self.layers[i]).self_attn.scaling)  # a transformers attention module


class GPT2Runner(BlockRunner):
    def __init__(self, model: Any):  # a transformers PreTrainedModel
        super().__init__(model)
        self.base: Any = model.transformer
        self.layers = self.base.h
        cfg: Any = model.config
        self.hidden = cfg.n_embd
        self._scale_weights = getattr(cfg, "scale_attn_weights", True)
        self._by_layer = getattr(cfg, "scale_attn_by_inverse_layer_idx", False)

    def embed(self, ids, positions):
        return self.base.wte(ids) + self.base.wpe(positions), None

    def qkv(self, i, layer, x, extra):
        h = layer.ln_1(x)
        q, k, v = layer.attn.c_attn(h).split(self.hidden, dim=2)
        return (
            self._heads(q, self.num_heads),
            self._heads(k, self.num_heads),
            self._heads(v, self.num_heads),
        )

    def finish(self, layer, x, attn):
        x = x + layer.attn.c_proj(attn)
        return x + layer.mlp(layer.ln_2(x))

    def final_norm(self, x):
        return self.base.ln_f(x)

    def scale(self, i: int) -> float:
        s = self.head_dim**-0.5 if self._scale_weights else 1.0
        return s / (i + 1) if self._by_layer else s


def runner_for(model: torch.nn.Module) -> BlockRunner | None:
    """The block runner for a supported architecture, else None (use the generic path)."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind == "llama" and hasattr(getattr(model, "model", None), "rotary_emb"):
        return LlamaRunner(model)
    if kind == "gpt2" and hasattr(model, "transformer"):
        return GPT2Runner(model)
    return None
