"""Batch sources: the streamed mixture keeps memory flat, resumes to the same batches under any
process count, mixes by its weights; text corpora train a language model; bad sources are named
before any training step."""

import json
import tracemalloc

import numpy as np
import pytest

from hhhlab.errors import DataError
from hhhlab.train.config import TrainConfig, load_config
from hhhlab.train.data import DataStats, encode_record
from hhhlab.train.sources import MemorySource, StreamMixture
from hhhlab.train.toy import write_toy
from hhhlab.train.trainer import TrainingError, shard, train, train_and_evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


@pytest.fixture(scope="module")
def tok():
    from hhhlab.models.tiny import tiny_tokenizer

    return tiny_tokenizer(512)


def encoder(tok, stats=None):
    stats = stats or DataStats()
    return lambda rec, i: encode_record(rec, i, tok, 256, stats)


def ids(batch):
    return [g.group_id for g in batch]


def base(tmp_path, **kw):
    return dict({"model": LLAMA, "output": str(tmp_path / "run"), "batch_size": 8, "lr": 3e-3, "device": "cpu",
                 "progress": False, "log_every": 1, "record_run": False}, **kw)


def test_stream_memory_stays_flat_while_the_corpus_grows_30x(tmp_path, tok):
    small = write_toy(tmp_path / "small.jsonl", 200, seed=0)
    big = write_toy(tmp_path / "big.jsonl", 6000, seed=1)

    def peak(path, source):
        tracemalloc.start()
        src = source(path)
        for s in range(40):  # 320 items: wraps around the small file, crosses blocks of both
            assert len(src.global_batch(s)) == 8
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    def stream(p):
        return StreamMixture([str(p)], "groups", encoder(tok), batch_size=8, seed=0, shuffle_buffer=32)

    def memory(p):
        return MemorySource.from_files([str(p)], "groups", encoder(tok), batch_size=8, seed=0, length_grouped=True)

    s_small, s_big = peak(small, stream), peak(big, stream)
    m_small, m_big = peak(small, memory), peak(big, memory)
    assert m_big > 10 * m_small  # the measure sees corpus size when the source holds it
    assert s_big < 1.5 * s_small + 200_000, (s_small, s_big)  # flat, within allocator noise
    assert s_big < m_big / 10


def test_stream_resumes_to_the_same_batches_at_any_step_and_process_count(tmp_path, tok):
    a = write_toy(tmp_path / "a.jsonl", 37, seed=0)
    b = write_toy(tmp_path / "b.jsonl", 23, seed=1)

    def make():
        return StreamMixture([str(a), str(b)], "groups", encoder(tok), batch_size=8, seed=3, weights=[2, 1],
                             shuffle_buffer=10)

    uninterrupted = make()
    ref = [ids(uninterrupted.global_batch(s)) for s in range(20)]  # 160 items: both files wrap around
    assert len({x for batch in ref for x in batch}) == 37 + 23  # every item is seen
    for start in (0, 7, 13):  # a "resumed" source (fresh process) jumping straight to a step
        fresh = make()
        assert [ids(fresh.global_batch(s)) for s in range(start, 20)] == ref[start:]
    again = make()
    again.global_batch(15)
    assert ids(again.global_batch(4)) == ref[4]  # going back works too
    batch = make().global_batch(9)
    for world in (1, 2, 3):  # every process count shares the same global batch
        shares = [shard(batch, world, r) for r in range(world)]
        assert sorted(x for s in shares for x in ids(s)) == sorted(ref[9])
    first_epoch_a = [x for batch in ref for x in batch if x.startswith("toy:0:")][:37]
    assert sorted(first_epoch_a) == sorted(f"toy:0:{i}" for i in range(37))  # an epoch is a permutation
    assert first_epoch_a != [f"toy:0:{i}" for i in range(37)]  # shuffled within blocks


def test_stream_mixes_by_its_weights(tmp_path, tok):
    a = write_toy(tmp_path / "a.jsonl", 20, seed=0)
    b = write_toy(tmp_path / "b.jsonl", 20, seed=1)
    src = StreamMixture([str(a), str(b)], "groups", encoder(tok), batch_size=8, seed=0, weights=[3, 1])
    picks = np.concatenate([src.choices(s) for s in range(500)])
    assert abs((picks == 0).mean() - 0.75) < 0.03


def test_killed_stream_run_resumes_to_the_uninterrupted_result(tmp_path):
    a = write_toy(tmp_path / "a.jsonl", 40, seed=0)
    b = write_toy(tmp_path / "b.jsonl", 40, seed=1, ranked=True)
    kw = {"train": f"{a},{b}", "source": "stream", "train_weights": [0.6, 0.4], "max_steps": 6,
          "checkpoint_every": 2, "shuffle_buffer": 16}
    _, full = train(TrainConfig(**base(tmp_path / "full", **kw)))
    cut = TrainConfig(**base(tmp_path / "cut", **kw))
    _, part = train(cut, stop_after=3)  # checkpoint at step 2; step 3 is lost as in a crash
    assert part["step"] == 3 and not part["finished"]
    _, resumed = train(cut)
    assert resumed["step"] == 6
    got, want = dict(map(tuple, resumed["history"])), dict(map(tuple, full["history"]))
    for step in (3, 4, 5, 6):
        assert got[step] == pytest.approx(want[step], rel=1e-5, abs=1e-7), step


@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_language_model_objective_on_a_text_corpus(tmp_path, fmt):
    texts = [f"The quick brown fox number {i} jumps over the lazy dog." for i in range(48)]
    f = tmp_path / f"texts.{fmt}"
    f.write_text("\n".join(json.dumps({"text": t, "id": f"t{i}"}) if fmt == "jsonl" else t
                           for i, t in enumerate(texts)) + "\n")
    m = train_and_evaluate(TrainConfig(**base(tmp_path, objective="lm", train=str(f), eval=str(f), max_steps=10)))
    assert m["objective"] == "language_model" and m["n_eval_texts"] == 48
    assert m["loss_history"][-1][1] < m["loss_history"][0][1] - 0.5
    e = m["lm_loss"]
    assert e["lo"] <= e["value"] <= e["hi"] and e["n"] == 48 and m["perplexity"] == pytest.approx(np.exp(e["value"]))
    from hhhlab.models.load import load_model

    lm = load_model(str(tmp_path / "run" / "model"), device="cpu")  # a plain causal LM: no head, no added token
    assert not (tmp_path / "run" / "model" / "head.safetensors").exists()
    assert lm.model.config.vocab_size == load_model(LLAMA, device="cpu").model.config.vocab_size


# -- bad input: named before any training step ----------------------------------------------------

def test_bad_source_settings_are_config_errors(tmp_path):
    with pytest.raises(DataError, match="train_weights has 3 weights for 2 training files"):
        load_config(None, train="a.jsonl,b.jsonl", output="o", source="stream", max_steps=2, train_weights="1,2,3")
    with pytest.raises(DataError, match="source: stream"):
        load_config(None, train="a.jsonl", output="o", train_weights="1")
    with pytest.raises(DataError, match="max_steps"):
        load_config(None, train="a.jsonl", output="o", source="stream")
    with pytest.raises(DataError, match="train_weights.*comma-separated"):
        load_config(None, train="a.jsonl", output="o", source="stream", max_steps=1, train_weights="1,x")
    with pytest.raises(DataError, match=r"unknown objective 'dpo'.*imitation.*language_model.*preference"):
        load_config(None, train="a.jsonl", output="o", objective="dpo")


@pytest.mark.parametrize("source", ["memory", "stream"])
def test_a_source_that_yields_nothing_is_named_before_training(tmp_path, source, monkeypatch):
    from hhhlab.train import trainer

    good = write_toy(tmp_path / "good.jsonl", 16, seed=0)
    flat = tmp_path / "flat.jsonl"  # every group without a preference: nothing to train on
    flat.write_text("".join(json.dumps({**json.loads(line), "scores": [1, 1]}) + "\n"
                            for line in good.read_text().splitlines()))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    monkeypatch.setattr(trainer, "make_optimizer", lambda *a: pytest.fail("training started"))
    extra = {"source": source, "max_steps": 2}
    for bad in (flat, empty):
        train_files = f"{good},{bad}" if source == "stream" else str(bad)
        with pytest.raises(DataError, match=bad.name):
            train(TrainConfig(**base(tmp_path, train=train_files, **extra)))
    with pytest.raises(DataError, match="good.jsonl:1.*'text'"):  # a text objective on preference groups
        train(TrainConfig(**base(tmp_path, objective="lm", train=str(good), **extra)))
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        train(TrainConfig(**base(tmp_path, train=str(tmp_path / "missing.jsonl"), **extra)))


def test_unknown_objective_given_to_the_loop_is_a_training_error(tmp_path):
    cfg = TrainConfig(**base(tmp_path, train="a.jsonl", max_steps=1))
    object.__setattr__(cfg, "objective", "nope")  # e.g. a config from a run whose plug-in is not installed
    with pytest.raises(TrainingError, match="unknown objective 'nope'"):
        train(cfg)


@pytest.mark.slow
def test_stream_run_cut_under_one_process_resumes_under_two(tmp_path):
    """The data position is the step: a streamed run checkpointed by 1 process and finished by 2
    (accelerate launch, gloo) gives the uninterrupted run's losses."""
    from launch import finish, launch

    a = write_toy(tmp_path / "a.jsonl", 40, seed=0)
    b = write_toy(tmp_path / "b.jsonl", 40, seed=1)
    kw = {"train": f"{a},{b}", "source": "stream", "train_weights": [0.6, 0.4], "max_steps": 6,
          "checkpoint_every": 2, "shuffle_buffer": 16, "model": "tiny:llama,layers=2,hidden=32,heads=4,kv_heads=2"}
    _, full = train(TrainConfig(**base(tmp_path / "full", **kw)))
    cut = TrainConfig(**base(tmp_path / "cut", **kw))
    train(cut, stop_after=3)
    args = ["train", "--output", cut.output, "--no-progress", "--no-record-run"]
    for k in ("model", "train", "source", "max_steps", "checkpoint_every", "shuffle_buffer", "batch_size", "lr",
              "log_every", "device"):
        args += ["--" + k.replace("_", "-"), str(getattr(cut, k))]
    args += ["--train-weights", "0.6,0.4"]
    finish(launch("hhhlab.train.cli", args, 2))
    m = json.loads((tmp_path / "cut" / "run" / "metrics.json").read_text())
    got, want = dict(map(tuple, m["loss_history"])), dict(map(tuple, full["history"]))
    assert m["world_size"] == 2 and m["train_steps"] == 6
    for step in (3, 4, 5, 6):
        assert got[step] == pytest.approx(want[step], rel=1e-4, abs=1e-6), step
