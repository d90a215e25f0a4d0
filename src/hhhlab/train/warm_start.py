"""Warm starts (``init``): train from a model a previous run saved (``OUTPUT/model``).

Preference-model pre-training (PMP) then fine-tuning is two runs, the second starting from the
first's weights *and* its head and end-of-context token: a fresh head would throw away what
PMP taught the score. Any saved model works as an init — it is an ordinary Hugging Face causal
LM directory (config, safetensors weights, tokenizer) plus, for head models, ``head.safetensors``
and ``pm_config.json``:

* an objective with a head keeps the saved head and EOC token when there are ones, and starts a
  fresh head (and adds the token) otherwise (e.g. from an imitation or distilled model);
* an objective without a head takes the LM alone (the EOC token, if any, stays in the
  vocabulary, unused).

An init must be the architecture and tokenizer of ``cfg.model`` (the model family the run
claims to train): same model type and shapes, and every token of the base tokenizer with the
same id. Anything else is an error naming the directory and the difference, before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hhhlab.errors import ModelLoadError
from hhhlab.train.preference_model import PreferenceModel, load_safetensors

#: config fields that must agree between an init and the base model
SHAPE_FIELDS = ("model_type", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "num_attention_heads",
                "n_head", "num_key_value_heads", "intermediate_size")


class InitError(ModelLoadError):
    """An ``init`` directory that cannot warm-start this run."""


def resolve_init(path: str | Path) -> Path:
    """The model directory of ``path``: ``path`` itself, or ``path/model`` (a run's output)."""
    p = Path(path)
    if not p.exists():
        raise InitError(f"init {path}: no such directory")
    if (p / "model" / "config.json").exists() and not (p / "config.json").exists():
        p = p / "model"
    if not (p / "config.json").exists():
        raise InitError(f"init {path}: not a saved model (no config.json; give a run's OUTPUT or OUTPUT/model)")
    if not list(p.glob("*.safetensors")):
        raise InitError(f"init {path}: no safetensors weights in {p}")
    return p


def check_compatible(init_dir: Path, lm: Any, tokenizer, base_spec: str) -> None:
    """Refuse an init of another architecture or tokenizer than ``base_spec``'s."""
    from hhhlab.models.load import load_model

    base = load_model(base_spec, device="cpu", dtype="float32")
    base_lm: Any = base.model
    a, b = base_lm.config.to_dict(), lm.config.to_dict()
    diff = {k: (b.get(k), a.get(k)) for k in SHAPE_FIELDS if a.get(k) != b.get(k)}
    if diff:
        raise InitError(f"init {init_dir} is another architecture than --model {base_spec}: "
                        + ", ".join(f"{k} {x} vs {y}" for k, (x, y) in diff.items()))
    base_vocab, vocab = base.tokenizer.get_vocab(), tokenizer.get_vocab()
    wrong = [t for t, i in base_vocab.items() if vocab.get(t) != i]
    if wrong:
        raise InitError(f"init {init_dir} has another tokenizer than --model {base_spec}: "
                        f"{len(wrong)} of its {len(base_vocab)} tokens differ (e.g. {wrong[:3]})")


def load_init(path: str | Path, base_spec: str, *, scoring: str, device: str, max_length: int | None
              ) -> PreferenceModel:
    """The model to train from ``path``: saved weights, and the saved head when ``scoring`` is
    ``"head"`` and the directory has one (see the module docstring)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hhhlab.store import read_json

    d = resolve_init(path)
    try:
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        lm: Any = AutoModelForCausalLM.from_pretrained(d, dtype="float32", local_files_only=True, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, SafetensorError: all mean "unloadable"
        raise InitError(f"init {path}: cannot load the model in {d} ({type(exc).__name__}: {exc})") from None
    check_compatible(d, lm, tok, base_spec)
    saved = read_json(d / "pm_config.json") if (d / "pm_config.json").exists() else {}
    pm = PreferenceModel(lm.to(device), tok, scoring=scoring, name=base_spec, max_length=max_length,
                         extra={"init": str(d), **({"init_objective": saved["objective"]} if "objective" in saved
                                                  else {})})
    if pm.head is not None and (d / "head.safetensors").exists():
        state = load_safetensors(d / "head.safetensors")
        try:
            pm.head.load_state_dict(state)
        except RuntimeError as exc:
            raise InitError(f"init {d / 'head.safetensors'}: does not match the model ({exc})") from None
    return pm.eval()
