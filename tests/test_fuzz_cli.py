"""Fuzzing the CLI's config parsing (issue 6, item 6): malformed input gives a clean HHHLabError or
a usage error (exit code 2 with a message), never an uncaught traceback, and never a silent
success with a wrong value.

Parsers fuzzed: `hhhlab.train.config.load_config` (YAML files), `parse_datasets` and
`SweepConfig`, `expand_model_list` / `parse_tiny_spec`, `parse_conditions` / `parse_evals`, and the
`hhhlab` CLI itself (``eval``, ``sweep objectives``, ``pm train``, ``models``) with random option
values; the commands' work is stubbed out right after parsing so each example costs milliseconds,
and the stub checks the values that reached it.
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hhhlab.errors import HHHLabError

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# -- YAML training configs ----------------------------------------------------------------------
def _fields():
    from hhhlab.train.config import TrainConfig

    return TrainConfig.model_fields


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)
keys = st.one_of(st.sampled_from(sorted(_fields())), st.sampled_from([k.replace("_", "-") for k in _fields()]),
                 st.text(max_size=10))


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_bytes(data)
    return p


def _check_loaded(cfg, given: dict) -> None:
    """A config that loads holds what the file said, for every key the file gave."""
    for key, value in given.items():
        name = str(key).replace("-", "_")
        got = getattr(cfg, name)
        if isinstance(value, (bool, int, float)) and not isinstance(got, bool) and isinstance(got, (int, float)) or isinstance(value, str) and isinstance(got, str) and name not in ("objective",):
            assert got == value, f"{name}: {value!r} loaded as {got!r}"


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_yaml_mapping_of_random_keys_and_values_loads_or_fails_cleanly(tmp_path_factory, data):
    from hhhlab.train.config import load_config

    data = {"train": "t.jsonl", "output": "out", **data}
    path = _write(tmp_path_factory.mktemp("y"), yaml.safe_dump(data, allow_unicode=True).encode())
    try:
        cfg = load_config(path)
    except HHHLabError as exc:
        assert str(path) in str(exc) or "cfg.yaml" in str(exc)
        return
    _check_loaded(cfg, {k: v for k, v in data.items() if str(k).replace("-", "_") in _fields()})


@FUZZ
@given(st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200)))
@example(b"\xff\xfe train: a\n")  # invalid UTF-8
@example(b"- a\n- b\n")  # a list, not a mapping
@example(b"just a string")
@example(b"train: [unclosed")
@example(b"&a [*a]")
def test_yaml_file_of_random_bytes_fails_cleanly(tmp_path_factory, data):
    from hhhlab.train.config import load_config

    path = _write(tmp_path_factory.mktemp("b"), data)
    try:
        load_config(path)
    except HHHLabError as exc:
        assert "cfg.yaml" in str(exc), exc


def test_yaml_with_invalid_utf8_is_a_clean_error(tmp_path):
    from hhhlab.train.config import load_config

    with pytest.raises(HHHLabError, match="cfg.yaml"):
        load_config(_write(tmp_path, b"train: t.jsonl\noutput: \xff\xfe\n"))


@pytest.mark.parametrize("line", ["epochs: .inf", "max_grad_norm: .nan", "lm_weight: .inf", "weight_decay: .inf"])
def test_yaml_non_finite_numbers_are_rejected(tmp_path, line):
    from hhhlab.train.config import load_config

    with pytest.raises(HHHLabError, match=line.split(":")[0]):
        load_config(_write(tmp_path, f"train: t.jsonl\noutput: o\n{line}\n".encode()))


@pytest.mark.parametrize("text", ["batch_size: true", "lr: 1.0e-3\nlr: 5"])
def test_yaml_bools_for_numbers_and_duplicate_keys_are_rejected(tmp_path, text):
    from hhhlab.train.config import load_config

    with pytest.raises(HHHLabError):
        load_config(_write(tmp_path, f"train: t.jsonl\noutput: o\n{text}\n".encode()))


# -- sweep datasets and settings ------------------------------------------------------------------
ds_text = st.lists(st.one_of(st.sampled_from(["hellaswag", "ethics-justice", "nope", "", " ", "=", "a=", "=p",
                                              "a=x.jsonl", "a=y.jsonl", "b c=p", "../up=p", "x|y=p"]),
                             st.text(alphabet=string.ascii_letters + "=/.|-_ ", max_size=8)),
                   max_size=5).map(",".join)


@FUZZ
@given(ds_text)
def test_parse_datasets_gives_unique_valid_names_or_a_clean_error(text):
    from hhhlab.experiments.datasets import KNOWN, parse_datasets

    try:
        out = parse_datasets(text)
    except HHHLabError:
        return
    names = [n for n, _ in out]
    assert out and len(set(names)) == len(names), out
    for name, path in out:
        assert name and "/" not in name and "|" not in name and name == name.strip()
        assert path is not None or name in KNOWN
        assert path is None or str(path).strip() not in ("", ".")
    given_parts = [p.strip() for p in text.split(",") if p.strip()]
    assert len(out) == len(given_parts), f"{text!r}: a dataset was silently dropped"


@FUZZ
@given(field=st.sampled_from(["train_size", "eval_size", "batch_size", "lr", "epochs", "max_steps", "max_length",
                              "checkpoint_every", "dtype", "objectives", "models"]),
       value=st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)))
def test_sweep_settings_are_checked_before_any_work(field, value):
    from pydantic import ValidationError

    from hhhlab.experiments.sweep import SweepConfig, check_grid

    try:
        cfg = SweepConfig(**{"datasets": "a=x.jsonl", "output": "out", "models": "tiny:llama", field: value})
    except ValidationError:
        return  # the CLI turns this into a clean error: test_cli_sweep_with_random_values
    try:
        models, objectives = check_grid(cfg)
    except HHHLabError:
        return
    assert models and objectives
    for name in ("batch_size", "max_length", "checkpoint_every", "train_size", "eval_size"):
        v = getattr(cfg, name)
        assert v is None or v >= 1, (name, v)
    assert cfg.lr > 0 and math.isfinite(cfg.lr) and cfg.epochs > 0


# -- model specs ----------------------------------------------------------------------------------
spec_parts = st.sampled_from(["tiny:llama", "tiny:gpt2", "tiny:foo", "m", "@L1", "@L0", "@L", "@Lx", "layers=2",
                              "hidden=x", "=3", "seed=1", "", " ", "x@L2", "random:llama-1b", "tiny:llama@L1"])


@FUZZ
@given(st.lists(st.one_of(spec_parts, st.text(alphabet="tiny:lam@L0123,= ", max_size=8)), max_size=5).map(",".join))
def test_expand_model_list_never_drops_or_invents_a_model(text):
    from hhhlab.models.load import expand_model_list

    try:
        specs = expand_model_list(text)
    except HHHLabError:
        return
    assert all(s and s == s.strip() and not s.startswith("@") for s in specs), specs
    assert len(specs) <= len([p for p in text.split(",") if p.strip()])


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["layers=1", "hidden=x", "=1", "layers", "foo=2", "seed=3", "heads=0",
                                           "layers=-1", "layers=1.5", " layers = 2 "]),
                          st.text(max_size=6)), max_size=3),
       st.sampled_from(["llama", "gpt2", "foo", ""]))
def test_tiny_spec_options_parse_or_fail_cleanly(opts, arch):
    from hhhlab.models.tiny import parse_tiny_spec

    spec = ",".join([f"tiny:{arch}", *opts])
    try:
        got_arch, kwargs = parse_tiny_spec(spec)
    except HHHLabError:
        return
    assert got_arch == arch.strip()
    assert all(isinstance(v, int) for v in kwargs.values())


@pytest.mark.parametrize("spec", ["tiny:llama,layers=x", "tiny:foo", "tiny:llama,foo=1", "tiny:llama,hidden=30"])
def test_bad_tiny_spec_is_a_model_load_error(spec):
    from hhhlab.errors import ModelLoadError
    from hhhlab.models.load import load_model

    with pytest.raises(ModelLoadError, match="tiny"):
        load_model(spec, dtype="float32", device="cpu")


# -- eval conditions and names --------------------------------------------------------------------
@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["plain", "prompt", "distilled:", "distilled:/m", "distilled:/n",
                                           " plain ", "Plain", "", "prompt:x"]),
                          st.text(max_size=6)), max_size=4).map(",".join))
def test_parse_conditions_round_trips_or_fails_cleanly(text):
    from hhhlab.evals.base import Condition, parse_conditions

    try:
        conds = parse_conditions(text)
    except HHHLabError:
        return
    assert conds and len(set(conds)) == len(conds)
    assert len(conds) == len([p for p in text.split(",") if p.strip()]), f"{text!r}: a condition was dropped"
    for c in conds:
        assert Condition.parse(c.kind + (f":{c.model_path}" if c.model_path else "")) == c


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["lambada", "hhh_alignment", "truthfulqa_mc1", "nope", "", " bbq "]),
                          st.text(max_size=6)), max_size=4).map(",".join))
def test_parse_evals_keeps_known_names_in_order_or_fails_cleanly(text):
    from hhhlab.evals.base import REGISTRY, parse_evals

    try:
        names = parse_evals(text)
    except HHHLabError:
        return
    given_names = [n.strip() for n in text.split(",") if n.strip()]
    assert names == list(dict.fromkeys(given_names)) and set(names) <= set(REGISTRY)


# -- the CLI itself -------------------------------------------------------------------------------
class Reached(Exception):
    """Raised by the stubs below: parsing succeeded and the command reached its real work."""

    def __init__(self, value):
        super().__init__("reached")
        self.value = value


def _reach(*args, **kwargs):
    raise Reached((args, kwargs))


def invoke(args: list[str]):
    """Run the CLI in-process and classify the outcome: "reached" (with the stub's arguments),
    "error" (HHHLabError or a usage error with exit 2 and a message) — anything else fails."""
    from typer.testing import CliRunner

    from hhhlab.cli import app

    res = CliRunner().invoke(app, args)
    exc = res.exception
    if isinstance(exc, Reached):
        return "reached", exc.value
    if isinstance(exc, HHHLabError):
        assert str(exc), args
        return "error", str(exc)
    if exc is None and res.exit_code == 0:
        return "ok", res.output
    if isinstance(exc, SystemExit) or exc is None:
        assert res.exit_code == 2, f"{args}: exit {res.exit_code} without reaching the command\n{res.output}"
        assert res.output.strip(), f"{args}: usage error without a message"
        return "error", res.output
    raise AssertionError(f"{args}: uncaught {type(exc).__name__}: {exc}") from exc


opt_values = st.one_of(st.integers(-3, 40).map(str), st.sampled_from(["", " ", "x", "1e-3", "nan", "inf", "-1",
                                                                     "1.5", "float32", "bfloat16", "auto"]),
                       st.text(alphabet=string.printable, max_size=6))


@FUZZ
@given(opt=st.sampled_from(["--batch-size", "--dtype", "--limit", "--seed", "--condition", "--evals", "--model"]),
       value=opt_values)
def test_cli_eval_with_random_values(monkeypatch, tmp_path_factory, opt, value):
    from hhhlab.evals import runner

    monkeypatch.setattr(runner, "run_suite", _reach)
    monkeypatch.setenv("HHHLAB_HOME", str(tmp_path_factory.mktemp("home")))
    args = ["eval", "--model", "tiny:llama", "--evals", "lambada", "--no-progress", opt, value]
    outcome, got = invoke(args)
    if outcome == "reached":
        cfg = got[0][0]
        if opt == "--batch-size":
            assert cfg.batch_size == int(value) >= 1
        elif opt == "--dtype":
            assert cfg.dtype == value in ("auto", "float32", "bfloat16", "float16")
        elif opt == "--limit":
            assert cfg.limit == int(value)  # checked against the items when they are loaded
        elif opt == "--seed":
            assert cfg.seed == int(value)


@FUZZ
@given(opt=st.sampled_from(["--train-size", "--eval-size", "--batch-size", "--lr", "--epochs", "--max-steps",
                            "--max-length", "--checkpoint-every", "--dtype", "--objectives", "--models", "--datasets",
                            "--seed"]),
       value=opt_values)
def test_cli_sweep_with_random_values(monkeypatch, tmp_path_factory, opt, value):
    from hhhlab.experiments import sweep

    monkeypatch.setattr(sweep, "prepare_dataset", _reach)  # after every setting is checked
    out = tmp_path_factory.mktemp("sweep")
    monkeypatch.setenv("HHHLAB_HOME", str(out / "home"))
    args = ["sweep", "objectives", "--datasets", "a=x.jsonl", "--output", str(out / "o"), "--models", "tiny:llama",
            *(["--max-steps", "2"] if opt != "--max-steps" else []), opt, value]
    outcome, _ = invoke(args)
    if outcome == "reached":
        from hhhlab.store import ResultsStore

        [run] = ResultsStore(out / "home").runs("sweep_objectives")  # what the sweep will run with
        number = {"--train-size": "train_size", "--eval-size": "eval_size", "--batch-size": "batch_size",
                  "--lr": "lr", "--epochs": "epochs", "--max-steps": "max_steps", "--max-length": "max_length",
                  "--checkpoint-every": "checkpoint_every", "--seed": "seed"}.get(opt)
        if number:
            v = run["config"][number]
            assert v == pytest.approx(float(value)) and math.isfinite(v), (opt, value, v)


@FUZZ
@given(opt=st.sampled_from(["--batch-size", "--lr", "--epochs", "--max-steps", "--objective", "--dtype",
                            "--max-length", "--grad-accum", "--warmup-steps", "--schedule", "--lm-weight"]),
       value=opt_values)
def test_cli_pm_train_with_random_values(monkeypatch, opt, value):
    from hhhlab.train import trainer

    monkeypatch.setattr(trainer, "train_and_evaluate", _reach)
    outcome, got = invoke(["pm", "train", "--train", "t.jsonl", "--output", "o", opt, value])
    if outcome == "reached":
        cfg = got[0][0]
        name = opt[2:].replace("-", "_")
        v = getattr(cfg, name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert v == pytest.approx(float(value)) and math.isfinite(v), (opt, value, v)


@FUZZ
@given(spec=st.one_of(spec_parts, st.lists(spec_parts, min_size=1, max_size=3).map(",".join)))
def test_cli_models_with_random_specs(monkeypatch, spec):
    from hhhlab.models import load

    real = load.load_model

    def checked(s, **kw):  # the real loader for tiny specs (milliseconds); anything else stops here
        if s.startswith("tiny:"):
            return real(s, **kw)
        raise Reached(s)

    monkeypatch.setattr(load, "load_model", checked)
    invoke(["models", spec, "--dtype", "float32"])


@pytest.mark.parametrize("args", [["models", "tiny:llama", "--dtype", "int8"],
                                  ["demo", "--model", "tiny:llama", "--dtype", "int8"],
                                  ["eval", "--model", "tiny:llama", "--evals", "lambada", "--device", "foo",
                                   "--no-progress"]])
def test_cli_bad_device_or_dtype_is_a_clean_error(args):
    assert invoke(args)[0] == "error"
