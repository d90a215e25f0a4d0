"""``hhhlab pmp``: preference-model pre-training over a weighted, streamed, seeded mixture.

Pipeline (digest §5): each source (preference groups from ``hhhlab data build``) is streamed once
into ``OUTPUT/data``: one pair per group, drawn with `pairs(group, "sample", seed)` (the paper
samples two answers with different scores per question), kept ranked (``[chosen, rejected]``) or
`binarize`d into ``GOOD:A > BAD:A`` and ``BAD:B > GOOD:B`` (mode ``binarized``, the paper's
default and twice the pairs). Then `hhhlab.train` trains the ``preference`` objective with
``λ·L_PM + μ·L_LM`` (default (1, 1)), the head read at the end-of-context token, on a
`StreamMixture` of the prepared files (``source: stream``: never read whole, constant memory),
for one epoch of the mixture: ``ceil(total pairs / batch_size)`` steps unless ``max_steps``.

Preparation holds one group at a time and is skipped when ``OUTPUT/data/manifest.json`` records
the same sources, mode, seed and limits; a source that yields no pair is an error before any
model is loaded. Under ``accelerate launch`` the main process prepares, the others wait; the
training loop is the shared one (data-parallel, resumable under another process count).

The LM term is the core objective's: the LM loss on the best response's tokens. For binarized
pairs the response is the whole labelled sequence (the context is empty), so it is the paper's
"full good sequence"; for ranked pairs the shared context is not an LM target (a deviation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.schema import JsonlWriter, PreferenceGroup, binarize, pairs, read_jsonl
from hhhlab.errors import DataError
from hhhlab.pmp.config import PMPConfig
from hhhlab.store import atomic_write_json, read_json

HUB_BUILDERS = {"stack-exchange": "stackexchange", "shp": "reddit", "hh-rlhf": "hh-rlhf"}
"""Which data builder reads a ``hf:`` source, guessed from its name (or say ``BUILDER=hf:...``)."""


def source_groups(src: str) -> Iterator[PreferenceGroup]:
    """The groups of a source: a preference-group JSONL file, or ``[BUILDER=]hf:NAME[:CONFIG][@SPLIT]``
    streamed through that data builder (``hf:HuggingFaceH4/stack-exchange-preferences``,
    ``hf:stanfordnlp/SHP@train``; malformed rows are skipped, as the builder rejects them)."""
    if "hf:" not in src:
        yield from read_jsonl(src)
        return
    from hhhlab.data.build import BuildOptions, HubInput
    from hhhlab.data.builders import get_builder

    builder, spec = hub_builder(src)
    for item in get_builder(builder).build_file(HubInput(spec), BuildOptions()):
        if isinstance(item, PreferenceGroup):
            yield item


def hub_builder(src: str) -> tuple[str, str]:
    """``(builder, hf:spec)`` of a hub source: ``BUILDER=hf:...`` or guessed from the name."""
    builder, sep, spec = src.partition("=hf:")
    if sep:
        return builder, "hf:" + spec
    builder = next((b for key, b in HUB_BUILDERS.items() if key in src.lower()), "")
    if not builder:
        raise DataError(f"PMP source {src}: say which builder reads it, e.g. stackexchange={src}")
    return builder, src


def check_source(src: str) -> None:
    """A missing file, an unknown hub builder or an unreachable hub dataset: an error before training."""
    if "hf:" not in src:
        if not Path(src).is_file():
            raise DataError(f"PMP source {src}: no such file (build it with `hhhlab data build`)")
        return
    from hhhlab.data.build import HubInput
    from hhhlab.data.builders import get_builder

    builder, spec = hub_builder(src)
    if not getattr(get_builder(builder), "HUB_INPUT", False):
        raise DataError(f"PMP source {src}: the {builder} builder reads dump files, not hub datasets")
    HubInput(spec).load()


def prepare_source(path: str, out: Path, mode: str, seed: int, limit: int | None) -> int:
    """Stream ``path``'s groups into ``out`` as PMP pairs; returns the number of pairs written."""
    n = 0
    with JsonlWriter(out) as w:
        for i, g in enumerate(source_groups(path)):
            if limit is not None and i >= limit:
                break
            for group in pmp_groups(g, mode, seed):
                w.write(group)
                n += 1
    return n


def pmp_groups(g: PreferenceGroup, mode: str, seed: int) -> list[PreferenceGroup]:
    """One sampled pair of ``g``, ranked (one group) or binarized (two groups)."""
    (p,) = pairs(g, "sample", seed)
    if mode == "binarized":
        return binarize(p)
    meta = {**p.metadata, "split_key": p.metadata.get("split_key") or g.split_key}
    return [PreferenceGroup(id=f"{g.id}:pair", context=p.context, responses=[p.chosen, p.rejected],
                            scores=[1.0, 0.0], kind="ranked", source=p.source, metadata=meta)]


def prepare(cfg: PMPConfig) -> dict:
    """Prepared files, their pair counts and the mixture weights (cached by a manifest)."""
    data = Path(cfg.output) / "data"
    key = {"sources": cfg.sources, "eval": cfg.eval, "mode": cfg.mode, "seed": cfg.seed,
           "max_pairs": cfg.max_pairs, "max_eval": cfg.max_eval}
    manifest = data / "manifest.json"
    if manifest.exists():
        done = read_json(manifest)
        if done.get("key") == key and all(Path(f).exists() for f in done["train"] + ([done["eval"]] if done["eval"]
                                                                                     else [])):
            return done
    for src in cfg.sources + (cfg.eval or []):
        check_source(src)
    data.mkdir(parents=True, exist_ok=True)
    files, counts = [], []
    for i, src in enumerate(cfg.sources):
        stem = Path(src.split("hf:")[-1].split("@")[0]).name.split(".")[0] or "hub"
        out = data / f"{i}-{stem}.{cfg.mode}.jsonl"
        n = prepare_source(src, out, cfg.mode, cfg.seed, cfg.max_pairs)
        if n == 0:
            raise DataError(f"PMP source {src} yields no pair (no group with two different scores)")
        files.append(str(out))
        counts.append(n)
    eval_file: Path | str | None = None
    if cfg.eval:
        eval_file = data / f"eval.{cfg.mode}.jsonl"
        with JsonlWriter(eval_file) as w:
            for src in cfg.eval:
                for i, g in enumerate(source_groups(src)):
                    if cfg.max_eval is not None and i >= cfg.max_eval:
                        break
                    for group in pmp_groups(g, cfg.mode, cfg.seed):
                        w.write(group)
        eval_file = str(eval_file)
    done = {"key": key, "train": files, "pairs": counts, "eval": eval_file}
    atomic_write_json(manifest, done)
    return done


def train_config(cfg: PMPConfig, prepared: dict):
    """The `TrainConfig` of the PMP run over the prepared files."""
    from hhhlab.train.config import TrainConfig

    weights = cfg.weights or [float(n) for n in prepared["pairs"]]
    total = sum(prepared["pairs"])
    steps = cfg.max_steps or max(1, math.ceil(total / cfg.batch_size))
    return TrainConfig(model=cfg.model, objective="preference", train=",".join(prepared["train"]), source="stream",
                       train_weights=[float(w) for w in weights], shuffle_buffer=cfg.shuffle_buffer,
                       eval=prepared["eval"], output=cfg.output, max_steps=steps, batch_size=cfg.batch_size,
                       lr=cfg.learning_rate, pm_weight=cfg.pm_weight, lm_weight=cfg.lm_weight, dtype=cfg.dtype,
                       device=cfg.device, max_length=cfg.max_length, seed=cfg.seed,
                       checkpoint_every=cfg.checkpoint_every, progress=cfg.progress, record_run=False,
                       log_every=1 if steps <= 2000 else 10)


def run_pmp(cfg: PMPConfig, *, accelerator=None) -> dict:
    """Prepare, train, evaluate; writes ``OUTPUT/results.json`` (kind ``pmp``). Resumable."""
    from hhhlab import distributed
    from hhhlab.results import write_results
    from hhhlab.train.trainer import train_and_evaluate

    prepared = prepare(cfg) if distributed.is_main() else None
    distributed.barrier()
    if prepared is None:
        prepared = read_json(Path(cfg.output) / "data" / "manifest.json")
    tcfg = train_config(cfg, prepared)
    metrics = train_and_evaluate(tcfg, accelerator=accelerator)
    if distributed.is_main():
        estimates = {}
        if "accuracy" in metrics:
            lo, hi = metrics["accuracy_ci"]
            estimates["heldout_accuracy"] = {"value": metrics["accuracy"], "lo": lo, "hi": hi,
                                             "n": metrics["n_eval"], "method": "bootstrap"}
        payload = {"sources": cfg.sources, "prepared": prepared["train"], "pairs": prepared["pairs"],
                   "weights": tcfg.train_weights, "steps": tcfg.max_steps, "lr": tcfg.lr,
                   "model_dir": metrics.get("model_dir"), "final_train_loss": metrics.get("final_train_loss"),
                   "loss_history": metrics.get("loss_history"), "train_seconds": metrics.get("train_seconds"),
                   "pairs_per_s": metrics.get("pairs_per_s"), "world_size": metrics.get("world_size")}
        write_results(Path(cfg.output) / "results.json", "pmp", config=cfg.model_dump(), estimates=estimates,
                      payload=payload, models=[cfg.model])
    return metrics
