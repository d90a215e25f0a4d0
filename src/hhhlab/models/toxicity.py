"""Offline toxicity classifiers: each maps texts to a probability of being toxic, in [0, 1].

The paper scores RealToxicityPrompts continuations with Detoxify's ``unbiased`` RoBERTa model
(digest §2.3). Its weights live on a model hub, so it cannot be our default here:

* ``profanity-check`` (default): ``alt-profanity-check`` from PyPI, a linear SVM on a bag of
  words (calibrated probabilities) trained on ~200k human-labelled texts (t-davidson's
  offensive-tweets data and the Jigsaw toxic-comment challenge that Detoxify also trains on). Its wheel ships the trained model, so it
  works offline. It reacts to offensive *words*; it misses toxicity phrased politely, so its
  numbers are lower-resolution than Detoxify's (say so next to every figure that uses it).
  Its model file is a joblib pickle inside the installed package: trusted like the package's
  code, never a file a user hands us.
* ``detoxify:PATH`` — the paper's classifier where its weights are at hand: a Hugging Face
  checkpoint folder or hub id (``unitary/unbiased-toxic-roberta``), loaded by transformers
  (safetensors, or ``.bin`` through transformers' weights-only loader), or Detoxify's own
  release file (``toxic_debiased-*.ckpt``), read with ``torch.load(weights_only=True)`` so that
  no pickled code runs; its tokenizer comes from ``roberta-base`` (hub or cache) unless
  ``detoxify:PATH,tokenizer=DIR`` names one. The ``toxicity`` output head is used (the paper
  does not say which head; digest §9).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hhhlab.errors import ModelLoadError

DEFAULT_CLASSIFIER = "profanity-check"
TOXIC_LABELS = ("toxicity", "toxic")  # Detoxify's unbiased / original model head names


class ToxicityClassifier(Protocol):
    name: str  # recorded with every result, e.g. "alt-profanity-check==1.9.1"

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text is toxic: float array of shape [len(texts)]."""
        ...


class ProfanityCheck:
    """``alt-profanity-check``'s packaged model (see the module docstring)."""

    def __init__(self) -> None:
        try:
            from importlib.metadata import version

            with warnings.catch_warnings():
                # The packaged model was pickled by an older scikit-learn; it loads and predicts
                # the same, but sklearn warns about the version difference on every import.
                warnings.simplefilter("ignore")
                from profanity_check import predict_prob
        except ImportError as exc:
            raise ModelLoadError(
                "the default toxicity classifier needs alt-profanity-check: "
                "pip install alt-profanity-check (its wheel ships the trained model)"
            ) from exc
        self._predict = predict_prob
        self.name = f"alt-profanity-check=={version('alt-profanity-check')}"

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self._predict(list(texts)), dtype=float)


@dataclass
class TransformerToxicity:
    """A sequence-classification model with a ``toxicity`` head (Detoxify's unbiased RoBERTa)."""

    model: Any
    tokenizer: Any
    label_index: int
    name: str
    batch_size: int = 64
    max_length: int = 256
    labels: list[str] = field(default_factory=list)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            enc = self.tokenizer(
                batch,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            )
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()
            # Detoxify's heads are independent labels (multi-label): sigmoid, not softmax.
            out.append(torch.sigmoid(logits[:, self.label_index]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def _label_index(labels: list[str], where: str) -> int:
    for want in TOXIC_LABELS:
        if want in labels:
            return labels.index(want)
    raise ModelLoadError(f"{where}: no 'toxicity' output among its labels {labels}")


def _from_hf(spec: str, tokenizer: str | None) -> TransformerToxicity:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(spec)
        tok = AutoTokenizer.from_pretrained(tokenizer or spec)
    except Exception as exc:  # offline hub, missing files: one clear message
        raise ModelLoadError(
            f"cannot load the toxicity classifier {spec!r}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    model.eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return TransformerToxicity(
        model, tok, _label_index(labels, spec), f"detoxify:{spec}", labels=labels
    )


def _from_detoxify_ckpt(path: Path, tokenizer: str | None) -> TransformerToxicity:
    """Detoxify's release checkpoint: ``{"state_dict": {"model.<hf key>": tensor}, "config":
    {..., "dataset": {"args": {"classes": [...]}}}}``; read weights-only (no code runs)."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: not a weights-only Detoxify checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelLoadError(
            f"{path}: no 'state_dict' in this checkpoint (expected Detoxify's release format)"
        )
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    try:
        classes = list(ckpt["config"]["dataset"]["args"]["classes"])
    except (KeyError, TypeError):
        n = (
            state["classifier.out_proj.weight"].shape[0]
            if "classifier.out_proj.weight" in state
            else 0
        )
        raise ModelLoadError(
            f"{path}: the checkpoint does not name its {n} output classes "
            "(config.dataset.args.classes)"
        ) from None
    tok_src = tokenizer or "roberta-base"
    try:
        cfg = RobertaConfig.from_pretrained(tok_src, num_labels=len(classes))
        tok = AutoTokenizer.from_pretrained(tok_src)
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: Detoxify checkpoints need the roberta-base config and tokenizer "
            f"({tok_src!r} could not be loaded: {type(exc).__name__}); pass "
            "detoxify:PATH,tokenizer=DIR with a local roberta-base copy"
        ) from exc
    model = RobertaForSequenceClassification(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: weights do not fit roberta-base (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    model.eval()
    return TransformerToxicity(
        model, tok, _label_index(classes, str(path)), f"detoxify:{path.name}", labels=classes
    )


def load_classifier(spec: str = DEFAULT_CLASSIFIER) -> ToxicityClassifier:
    """``profanity-check`` or ``detoxify:PATH_OR_HUB_ID[,tokenizer=DIR]`` (see module docstring)."""
    spec = (spec or DEFAULT_CLASSIFIER).strip()
    if spec in ("profanity-check", "alt-profanity-check"):
        return ProfanityCheck()
    if spec.startswith("detoxify:"):
        target, *opts = spec.removeprefix("detoxify:").split(",")
        options = dict(o.split("=", 1) for o in opts if "=" in o)
        bad = [o for o in opts if "=" not in o] + [k for k in options if k != "tokenizer"]
        if bad or not target:
            raise ModelLoadError(
                f"toxicity classifier {spec!r}: use detoxify:PATH_OR_HUB_ID[,tokenizer=DIR]"
            )
        path = Path(target).expanduser()
        if path.is_file():
            return _from_detoxify_ckpt(path, options.get("tokenizer"))
        return _from_hf(str(path) if path.exists() else target, options.get("tokenizer"))
    raise ModelLoadError(
        f"unknown toxicity classifier {spec!r}: use {DEFAULT_CLASSIFIER} or "
        "detoxify:PATH_OR_HUB_ID (the paper's unitary/unbiased-toxic-roberta)"
    )
