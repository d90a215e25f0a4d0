"""The shared pieces of typed configs: one formatter of pydantic errors (three ways of showing the
value given), one comma-separated-numbers validator (PMP's mixture weights, training-file
weights), one flag typing (``pm train``'s flags are `config_flags` of `TrainConfig`)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hhhlab.configflags import build_config, comma_floats, config_flags, option_type
from hhhlab.errors import DataError, HHHLabError, describe_validation_error


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1, ge=1)
    name: str


def _error(**values) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Cfg(**values)
    return info.value


def test_one_formatter_three_ways_to_show_the_value():
    exc = _error(steps=0, typo=3)
    assert describe_validation_error(exc, "config") == (
        "steps: Input should be greater than or equal to 1; name: Field required; typo: Extra inputs are not permitted")
    assert describe_validation_error(exc, "option", show_input="inline") == (
        "steps=0: Input should be greater than or equal to 1; name: Field required; "
        "typo=3: Extra inputs are not permitted")
    assert describe_validation_error(exc, "config", show_input="after") == (
        "steps: Input should be greater than or equal to 1 (got 0); name: Field required; typo: unknown key")
    with pytest.raises(HHHLabError, match=r"^invalid x\.yaml: steps: .* \(got 0\); name: Field required; "
                                          r"typo: unknown key$"):
        build_config(_Cfg, {"steps": 0, "typo": 3}, where="x.yaml")


def test_comma_separated_weights_are_one_rule_for_pmp_and_training():
    from hhhlab.pmp.config import PMPConfig, load
    from hhhlab.train.config import TrainConfig, load_config

    assert comma_floats(" 1, 2.5,") == [1.0, 2.5] and comma_floats([1, True, 0.5]) == [1.0, True, 0.5]
    pmp = PMPConfig(sources="a,b", weights="1, 3", output="o")
    train = TrainConfig(train="a,b", train_weights="1, 3", source="stream", max_steps=1, output="o")
    assert pmp.weights == train.train_weights == [1.0, 3.0]
    assert TrainConfig(train="a,b", train_weights=[1, 3], source="stream", max_steps=1, output="o").train_weights \
        == [1.0, 3.0]  # ints of a YAML list, under the strict model
    with pytest.raises(DataError, match=r"weights: Value error, expected comma-separated numbers, not '1,x'$"):
        load(PMPConfig, None, sources="a,b", weights="1,x", output="o")
    with pytest.raises(DataError, match=r"train_weights: Value error, expected comma-separated numbers, not '1,x'$"):
        load_config(None, train="a,b", train_weights="1,x", source="stream", max_steps=1, output="o")


def test_pm_train_flags_are_the_shared_config_flags():
    from hhhlab.train.cli import _config_flags
    from hhhlab.train.config import TrainConfig

    assert option_type(Literal["a", "b"] | None) is str and option_type(int | None) is int
    flags = _config_flags()
    assert flags[0].name == "config"
    assert [p.name for p in flags[1:]] == list(TrainConfig.model_fields)
    decls = {p.name: tuple(p.default.param_decls) for p in flags[1:]}
    assert decls == {p.name: tuple(p.default.param_decls) for p in config_flags(TrainConfig, comma_lists=True)}
    assert decls["train_weights"] == ("--train-weights",) and decls["lora"] == ("--lora/--no-lora",)
    weights = next(p for p in flags if p.name == "train_weights")
    assert weights.annotation == str | None  # one comma-separated flag; the field's comma_floats splits it
