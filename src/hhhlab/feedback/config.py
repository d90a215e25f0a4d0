"""Typed configs of ``hhhlab serve`` and ``hhhlab elo``: the one source of their flags and defaults
(``feedback/cli.py`` generates the flags from these fields, as ``pm train`` does from TrainConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: str = Field(..., description="comma-separated model specs (smollm2-135m, tiny:llama, PATH, M@L4, ...)")
    conditions: str = Field("prompt", description="comma-separated: plain, prompt, distilled:DIR "
                            "({model} in DIR is replaced by each model)")
    prompt: str = Field("hhh", description="the prompt of the prompt condition: hhh (built-in) or a prompt file")
    db: str | None = Field(None, description="SQLAlchemy URL or SQLite path (default: $HHHLAB_HOME/feedback.sqlite)")
    host: str = Field("127.0.0.1", description="interface to bind; anything but loopback exposes the app")
    port: int = Field(8000, description="TCP port")
    max_new_tokens: int = Field(128, description="tokens per reply at most")
    temperature: float = Field(1.0, description="sampling temperature (the paper: 1)")
    top_p: float = Field(0.95, description="nucleus sampling mass (the paper: 0.95)")
    max_message_chars: int = Field(2000, description="longest human message accepted")
    max_comment_chars: int = Field(2000, description="longest comment accepted")
    max_turns: int = Field(8, description="human turns per conversation at most")
    messages_per_minute: int = Field(10, description="per-rater limit on messages (each costs a generation)")
    ratings_per_minute: int = Field(60, description="per-rater limit on ratings")
    dtype: str = Field("auto", description="auto, float32 or bfloat16")
    device: str = Field("auto", description="auto, cpu or cuda")
    seed: int | None = Field(None, description="seed of the pair scheduler (random if unset)")
    pairs: Literal["all", "paper"] = Field("all", description="which systems meet: every pair, or the paper's "
                                           "design (prompted models all against each other, every other "
                                           "condition only against the same model's prompted system)")


class EloConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: str | None = Field(None, description="the comparisons database (SQLAlchemy URL or SQLite path)")
    comparisons: str | None = Field(None, description="JSONL of comparisons {model_a, model_b, rating 1-8} "
                                    "gathered elsewhere (instead of --db)")
    by: Literal["system", "model", "condition"] = Field(
        "system", description="what gets a score: each model+condition, each model, or each condition")
    method: Literal["wins", "half-ties", "soft", "strength"] = Field(
        "wins", description="how ratings become outcomes (see docs/feedback.md); the others are also fitted "
        "and reported for comparison")
    prior_sd: float = Field(500.0, description="sd of the weak Gaussian prior on each score, in Elo points")
    n_boot: int = Field(1000, description="bootstrap resamples of the comparisons for the CIs")
    seed: int = Field(0, description="bootstrap seed")
    anchor: str | None = Field(None, description="the system/model fixed at 0 Elo (default: the mean is 0)")
    output: str | None = Field(None, description="write the results JSON here")
    figures: str | None = Field(None, description="folder for the figures (default: beside --output)")
    min_seconds: float = Field(3.0, description="QC: a rating given sooner after the pair was shown is too fast")
    side_bias_min_n: int = Field(10, description="QC: ratings a rater needs before the one-side rule applies")
    side_bias_frac: float = Field(0.9, description="QC: share of ratings on one side that flags a rater")
    identity_terms: str = Field("", description="QC: extra comma-separated names whose mention in a reply "
                                "reveals a model")
