"""The study's other stages: re-ranking, context distillation, PMP, as cells of `hhhlab reproduce`.

The evals and the PM-vs-IL grid have cells of their own (`experiments.reproduce`); every other
stage of the paper is already a command with its own typed config (`RerankConfig`,
`DistillConfig` + `CompareConfig`, `SyntheticSweepConfig`, `PMPSweepConfig`), its own resume and
its own results document. A `Stage` turns one section of the study config into cells of that
command, so the study runs the very code a user runs by hand:

* the section holds the command's own keys (checked against its schema when the study config
  is loaded, so a misspelt key or a wrong type is an error naming ``section.key`` before any
  work); the study fills what it owns (``output``, the progress bars) and what the section leaves
  out of ``data_dir``, ``dtype`` and ``seed``;
* a per-model stage (``ladder``) gets one cell per model of ``models`` (the section's own
  ``models``, else the study's ladder), so a Ray cluster runs the rungs side by side;
* a cell returns the command's results documents, which the driver writes under
  ``OUTPUT/cells/<key>/`` (the finished marker); a cell killed half-way resumes from the
  command's own caches (samples and verdicts, the teacher cache and checkpoints, stored items).

A new stage is one `Stage` in `STAGES` and one ``run`` function here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hhhlab.errors import HHHLabError, describe_validation_error

#: keys the study owns in every stage's command config
STUDY_OWNED = ("output", "progress")
#: study-level settings a section inherits when it does not give them
INHERITED = ("data_dir", "dtype", "seed")


@dataclass(frozen=True)
class Stage:
    name: str  #: the study config's section
    title: str  #: what it is (a skipped cell's document says it)
    build: Callable[[dict[str, Any], dict[str, Any], str | None, Path], BaseModel]
    """(section, study settings, model or None, output folder) -> the cell's validated config"""
    run: Callable[[Any], list[dict]]  #: the cell (module level: Ray ships it): config -> documents
    ladder: bool  #: one cell per model (the section's ``models``, else the study's ladder)
    kind: str  #: the results kind of its first document (and of a "skipped: missing data" one)


def _inherit(section: dict[str, Any], study: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The section's keys, with the study's ``data_dir``/``dtype``/``seed`` where the command
    has such a key and the section leaves it out. The study's ``dtype: auto`` is not passed on:
    "auto" is each command's own choice (the evals' and re-ranking's default is auto; the
    training commands' is float32, and the synthetic sweep has no auto)."""
    out = {k: v for k, v in section.items() if k != "models"}
    for key in INHERITED:
        value = study.get(key)
        if key in fields and key not in out and value is not None and not (key == "dtype" and value == "auto"):
            out[key] = value
    return out


def _named(exc: ValidationError, prefix: str) -> str:
    """A validation error as ``prefix.key: message; prefix.key: message``."""
    return "; ".join(f"{prefix}.{part}" for part in describe_validation_error(exc, show_input="after").split("; "))


def _check_owned(section: dict[str, Any], owned: tuple[str, ...]) -> None:
    bad = [k for k in section if k in owned]
    if bad:
        raise ValueError(f"{bad[0]}: set by the study (one folder per cell under its output), not here")


# -- re-ranking (Figs 11-13) ------------------------------------------------------------------
def _rerank_builder(task: str) -> Callable[[dict, dict, str | None, Path], BaseModel]:
    def build(section: dict, study: dict, model: str | None, output: Path) -> BaseModel:
        from hhhlab.experiments.rerank import RerankConfig

        _check_owned(section, (*STUDY_OWNED, "task"))
        values = _inherit(section, study, RerankConfig.model_fields)
        return RerankConfig(**values, task=task, models=model or study["models"], output=str(output),
                            progress=False)

    return build


def run_rerank_cell(cfg: Any) -> list[dict]:
    """One model's re-ranking (it resumes from its cached samples, verdicts and PM/IL cells)."""
    from hhhlab.experiments.rerank import run_rerank

    return [run_rerank(cfg)]


# -- context distillation (Figs 7, 26; §2.2) ----------------------------------------------------
class DistillCell(BaseModel):
    """Distil one model, then compare it plain vs prompted vs distilled (unless ``compare`` is None)."""

    model_config = ConfigDict(extra="forbid")
    distill: Any  #: `DistillConfig`
    compare: Any = None  #: `CompareConfig` or None


class DistillSection(BaseModel):
    """The ``distill`` section: `DistillConfig` keys, plus ``compare`` (`CompareConfig` keys, or
    null for no comparison) and ``models``."""

    model_config = ConfigDict(extra="allow")
    models: str | None = Field(None, description="ladder for distillation (default: the study's models)")
    compare: dict[str, Any] | None = Field(default_factory=dict, description="`hhhlab distill compare` keys "
                                           "(evals, limit, ...); null: no comparison")


def _build_distill(section: dict, study: dict, model: str | None, output: Path) -> BaseModel:
    from hhhlab.distill.config import CompareConfig, DistillConfig

    sec = DistillSection(**section)
    train = dict(sec.model_extra or {})
    _check_owned(train, (*STUDY_OWNED, "model"))
    values = _inherit(train, study, DistillConfig.model_fields)
    # lax: a study file's YAML ("1e-4" is a string in YAML 1.1) is read as the other sections are
    distill = DistillConfig.model_validate({**values, "model": model or study["models"],
                                            "output": str(output / "student"), "progress": False}, strict=False)
    compare = None
    if sec.compare is not None:
        _check_owned(sec.compare, (*STUDY_OWNED, "model", "distilled", "resume"))
        cvalues = _inherit(sec.compare, study, CompareConfig.model_fields)
        if isinstance(cvalues.get("evals"), list):  # YAML list or the command's comma-separated string
            cvalues["evals"] = ",".join(map(str, cvalues["evals"]))
        cvalues.setdefault("prompt", distill.prompt)
        try:
            compare = CompareConfig.model_validate({**cvalues, "model": distill.model, "distilled": distill.output,
                                                    "output": str(output / "compare.json"), "resume": True,
                                                    "progress": False}, strict=False)
        except ValidationError as exc:
            raise ValueError(_named(exc, "compare")) from None
    return DistillCell(distill=distill, compare=compare)


def run_distill_cell(cell: DistillCell) -> list[dict]:
    """Distil (resuming from the teacher cache and checkpoints), then compare (resuming the
    store run of the cell's items): the ``distill_compare`` and the ``distill`` documents."""
    import hashlib
    import json

    from hhhlab.distill.measure import compare_identity, compare_in_run
    from hhhlab.distill.run import run_distill
    from hhhlab.store import ResultsStore

    distilled = run_distill(cell.distill)
    if cell.compare is None:
        return [distilled]
    settings = cell.compare.model_dump()
    # one store run per cell (its settings and output): a resumed cell reuses exactly its own items
    run_id = "reproduce-compare-" + hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    run = ResultsStore().create_run("distill_compare", {**settings, "identity": compare_identity(cell.compare)},
                                    name=cell.compare.evals, run_id=run_id)
    return [compare_in_run(cell.compare, run), distilled]


# -- preference-model pre-training (Figs 4, 5, 33) ----------------------------------------------
def _pmp_builder(synthetic: bool) -> Callable[[dict, dict, str | None, Path], BaseModel]:
    def build(section: dict, study: dict, model: str | None, output: Path) -> BaseModel:
        from hhhlab.pmp.sweep import PMPSweepConfig, SyntheticSweepConfig

        cls = SyntheticSweepConfig if synthetic else PMPSweepConfig
        _check_owned(section, STUDY_OWNED)
        values = _inherit(section, study, cls.model_fields)
        if not synthetic:  # one sweep over the ladder (its PMP models are shared by the targets)
            values["models"] = stage_models(section, study["models"])
        return cls(**values, output=str(output), progress=False)

    return build


def run_pmp_synthetic_cell(cfg: Any) -> list[dict]:
    """The synthetic ranked-vs-binary experiment (its cells resume from their saved results)."""
    from hhhlab.pmp.sweep import run_synthetic
    from hhhlab.store import read_json

    run_synthetic(cfg)  # returns its payload; the document is OUTPUT/results.json
    return [read_json(Path(cfg.output) / "results.json")]


def run_pmp_cell(cfg: Any) -> list[dict]:
    """The real-data PMP sweep: models x conditions x targets x n (resumable cell by cell)."""
    from hhhlab.pmp.sweep import run_sweep
    from hhhlab.store import read_json

    run_sweep(cfg)
    return [read_json(Path(cfg.output) / "results.json")]


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("rerank", "re-ranking Lambada samples by PM vs IL (Figs 11, 13)", _rerank_builder("lambada"),
          run_rerank_cell, ladder=True, kind="sweep_rerank"),
    Stage("rerank_code", "re-ranking programs run with their tests by PM vs IL (Figs 11, 12)",
          _rerank_builder("code"), run_rerank_cell, ladder=True, kind="sweep_rerank"),
    Stage("distill", "context distillation and plain vs prompted vs distilled (Figs 2-7, §2.2)", _build_distill,
          run_distill_cell, ladder=True, kind="distill_compare"),
    Stage("pmp_synthetic", "the synthetic ranked-vs-binary PMP experiment (Fig 33)", _pmp_builder(True),
          run_pmp_synthetic_cell, ladder=False, kind="sweep_pmp_synthetic"),
    Stage("pmp", "PMP on real sources, then fine-tuning curves (Figs 4, 5, 17, 18, 29)", _pmp_builder(False),
          run_pmp_cell, ladder=False, kind="sweep_pmp"),
)}


def run_stage_cell(name: str, config: Any) -> list[dict]:
    """A stage cell as the executor runs it. Missing data is not a failure to retry: the cell
    returns a "skipped" document saying what is missing (the report shows it, and the next run of
    the study tries the cell again, as the data may be there by then)."""
    from hhhlab.errors import DataError
    from hhhlab.results import make_results

    stage = STAGES[name]
    try:
        return stage.run(config)
    except DataError as exc:
        return [make_results(stage.kind, config=config.model_dump(), payload={"skipped": f"{stage.title}: missing data: {exc}"})]


def stage_models(section: dict[str, Any], study_models: str) -> list[str]:
    from hhhlab.models.load import expand_model_list

    return list(dict.fromkeys(expand_model_list(section.get("models") or study_models)))


def build_cell_config(stage: Stage, section: dict[str, Any], study: dict[str, Any], model: str | None,
                      output: Path) -> BaseModel:
    """The cell's command config, or an error naming ``section.key``."""
    try:
        return stage.build(section, study, model, output)
    except ValidationError as exc:
        raise HHHLabError(f"study config: {_named(exc, stage.name)}") from None
    except (ValueError, TypeError) as exc:
        raise HHHLabError(f"study config: {stage.name}.{exc}") from None


def check_sections(sections: dict[str, dict[str, Any] | None], study: dict[str, Any]) -> None:
    """Validate every present section against its command's schema (before any work)."""
    unknown = [k for k in sections if k not in STAGES]
    if unknown:
        raise HHHLabError(f"study config: unknown stage {', '.join(unknown)} (stages: {', '.join(STAGES)})")
    for name, section in sections.items():
        if section is None:
            continue
        if not isinstance(section, dict):
            raise HHHLabError(f"study config: {name}: a section is a mapping of the command's keys (or null)")
        stage = STAGES[name]
        models = stage_models(section, study["models"]) if stage.ladder else [None]
        if not models:
            raise HHHLabError(f"study config: {name}: models names no model")
        build_cell_config(stage, section, study, models[0], Path("check"))
