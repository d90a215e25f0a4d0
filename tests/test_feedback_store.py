"""Comparison storage, the pair scheduler, QC flags, multi-turn framing, generation on a tiny model,
and ``hhhlab data build feedback`` (comparisons -> preference groups for ``pm train``)."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from hhhlab.data.schema import read_jsonl
from hhhlab.errors import HHHLabError
from hhhlab.feedback.db import FeedbackStore, FeedbackStoreError, chosen_side, strength
from hhhlab.feedback.framing import frame_conversation
from hhhlab.feedback.qc import QcConfig, flag, identity_terms
from hhhlab.feedback.schedule import BalancedScheduler
from hhhlab.prompts import parse_prompt

pytestmark = pytest.mark.usefixtures("one_thread")


def _store_with(tmp_path, ratings, rater="r1", responses=("one answer", "another answer")):
    store = FeedbackStore(tmp_path / "f.sqlite")
    store.register_systems([{"name": "m1/prompt", "model": "m1", "condition": "prompt", "non_embedding_params": 10,
                             "prompt_version": None, "info": {}},
                            {"name": "m2/prompt", "model": "m2", "condition": "prompt", "non_embedding_params": 20,
                             "prompt_version": None, "info": {}}])
    store.add_rater(rater)
    who, _ = store.rater_for_token(store.add_rater(rater))
    conv = store.new_conversation(who.id)
    from hhhlab.feedback.db import utcnow

    for i, rating in enumerate(ratings):
        p = store.add_pending(conversation_id=conv.id, rater_id=who.id, turn_index=i, user_message=f"question {i}",
                              system_a="m1/prompt", system_b="m2/prompt", response_a=responses[0],
                              response_b=responses[1], swapped=False, sampling={"temperature": 1.0}, latency_a_s=0.1,
                              latency_b_s=0.2, queue_s=0.0, requested_at=utcnow())
        store.rate(p.id, who, rating, f"comment {i}")
    return store, conv


def test_scale():
    assert [chosen_side(r) for r in range(1, 9)] == list("AAAABBBB")
    assert [strength(r) for r in range(1, 9)] == [4, 3, 2, 1, 1, 2, 3, 4]
    for bad in (0, 9, 2.5, True, "3"):
        with pytest.raises(ValueError):
            strength(bad)


def test_rate_is_one_transaction_and_replay_is_refused(tmp_path):
    store, _conv = _store_with(tmp_path, [2, 7])
    rows = store.comparisons()
    assert [(r.rating, r.chosen, r.turn_index) for r in rows] == [(2, "A", 0), (7, "B", 1)]
    assert rows[1].context == [{"role": "Human", "text": "question 0"}, {"role": "Assistant", "text": "one answer"}]
    assert rows[0].model_a == "m1" and rows[0].condition_b == "prompt" and rows[0].comment == "comment 0"
    who, _ = store.rater_for_token(store.add_rater("r1"))
    with pytest.raises(LookupError):
        store.rate(rows[0].uid, who, 3, "")
    # The database itself refuses a rating outside the scale, whatever the code path.
    con = sqlite3.connect(tmp_path / "f.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("UPDATE comparisons SET rating=9 WHERE id=1")
    assert store.pair_counts() == {frozenset(("m1/prompt", "m2/prompt")): 2}


def test_another_rater_cannot_rate_or_read(tmp_path):
    store, conv = _store_with(tmp_path, [])
    owner, _ = store.rater_for_token(store.add_rater("r1"))
    other, _ = store.rater_for_token(store.add_rater("r2"))
    from hhhlab.feedback.db import utcnow

    p = store.add_pending(conversation_id=conv.id, rater_id=owner.id, turn_index=0, user_message="q",
                          system_a="m1/prompt", system_b="m2/prompt", response_a="x", response_b="y", swapped=True,
                          sampling={}, latency_a_s=0, latency_b_s=0, queue_s=0, requested_at=utcnow())
    assert store.conversation(conv.id, other.id) == (None, None)
    with pytest.raises(LookupError):
        store.rate(p.id, other, 1, "")
    assert store.comparisons() == []


def test_bad_database_urls(tmp_path):
    with pytest.raises(FeedbackStoreError, match="cannot open"):
        FeedbackStore("nosuchdriver://x")
    with pytest.raises(FeedbackStoreError, match="does not exist"):
        FeedbackStore(tmp_path / "missing.sqlite", create=False)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeedbackStoreError, match="cannot open"):
        FeedbackStore(tmp_path / "junk.sqlite")
    store = FeedbackStore(tmp_path / "ok.sqlite")
    assert store.rater_for_token("nope") == (None, "unknown access token")
    token = store.add_rater("old", days=-1)
    assert "expired" in store.rater_for_token(token)[1]


def test_scheduler_is_balanced_and_randomises_sides():
    s = BalancedScheduler(["a", "b", "c", "d"], {frozenset(("a", "b")): 5}, seed=0)
    picks = [s.next_pair() for _ in range(5 * 6 + 25)]
    counts = Counter(frozenset(p[:2]) for p in picks)
    assert max(s.counts.values()) - min(s.counts.values()) <= 1  # the pre-existing 5 were filled up first
    assert counts[frozenset(("a", "b"))] < counts[frozenset(("c", "d"))]
    swapped = sum(p[2] for p in picks)
    assert 15 < swapped < 40
    a, b, sw = s.next_pair()
    assert a != b and (sorted((a, b)) == [a, b]) != sw


def test_paper_pairs():
    from hhhlab.feedback.schedule import paper_pairs

    systems = {f"{m}/{c}": (m, c) for m in ("s", "l") for c in ("prompt", "distilled", "plain")}
    pairs = {tuple(sorted(p)) for p in paper_pairs(systems)}
    assert pairs == {("l/prompt", "s/prompt"), ("l/distilled", "l/prompt"), ("l/plain", "l/prompt"),
                     ("s/distilled", "s/prompt"), ("s/plain", "s/prompt")}
    s = BalancedScheduler(list(systems), seed=1, pairs=paper_pairs(systems))
    assert all(frozenset(s.next_pair()[:2]) in s.pairs for _ in range(20))


def test_multi_turn_framing_matches_the_prompt_format():
    prompt = parse_prompt("Human: Hi\n\nAssistant: Hello!\n\n-----\n\nHuman: Q\n\nAssistant: A")
    turns = [{"role": "Human", "text": "first"}, {"role": "Assistant", "text": "reply"}]
    ctx = frame_conversation(prompt, turns, "second")
    assert ctx == prompt.text + prompt.separator + "Human: first\n\nAssistant: reply\n\nHuman: second\n\nAssistant:"
    assert frame_conversation(None, [], "hi") == "Human: hi\n\nAssistant:"
    # The framed conversation parses as one more dialogue of the prompt (same format as its own).
    full = parse_prompt(ctx + " done")
    assert full.n_dialogues == prompt.n_dialogues + 1
    from hhhlab.errors import RequestError

    with pytest.raises(RequestError):
        frame_conversation(None, [{"role": "Assistant", "text": "x"}], "hi")


def test_tiny_model_systems_generate_with_the_paper_sampling(tiny_llama, tmp_path):
    from hhhlab.feedback.systems import Sampling, System, SystemPool
    from hhhlab.models.engine import Engine

    prompt = parse_prompt(("Human: What is the capital of France?\n\nAssistant: Paris.\n\n-----\n\n" * 3)
                          + "Human: Hi\n\nAssistant: Hello")
    eng = Engine(tiny_llama, batch_size=1)
    plain = System("t/plain", "tiny", "tiny", "plain", tiny_llama, eng)
    prompted = System("t/prompt", "tiny", "tiny", "prompt", tiny_llama, eng, prompt)
    pool = SystemPool([plain, prompted], Sampling(max_new_tokens=8))
    out = pool.generate_pair("t/prompt", "t/plain", [{"role": "Human", "text": "a"},
                                                      {"role": "Assistant", "text": "b"}], "c")
    assert out["sampling"]["temperature"] == 1.0 and out["sampling"]["top_p"] == 0.95
    assert "\n\nHuman:" in out["sampling"]["stop"]
    assert out["latency_a_s"] > 0 and out["queue_s"] >= 0
    # The kept prompt prefix gives exactly what a fresh engine call gives for the same seed.
    ctx = prompted.context([], "hello")
    seed = 123
    kept = prompted.generate(ctx, pool.sampling, seed)
    assert prompted._prefix is not None
    fresh = eng.generate([ctx], pool.sampling.config(seed))[0][0].strip()
    assert kept == fresh
    with pytest.raises(Exception, match="window"):
        plain.generate("x " * 2000, pool.sampling, 0)


def test_qc_rules():
    recs = [{"rating": 1, "rater": "lazy", "rating_seconds": 10.0, "response_a": "ok", "response_b": "ok"}] * 10
    recs += [{"rating": r, "rater": "good", "rating_seconds": 1.0 if r == 2 else 9.0,
              "response_a": "As SmolLM2 I think" if r == 7 else "fine", "response_b": "x"} for r in range(1, 9)] * 2
    _flags, summary = flag(recs, QcConfig(min_seconds=3.0), identity_terms(["smollm2-135m", "tiny:llama,seed=1"]))
    assert summary["flagged"] == {"too_fast": 2, "one_side": 10, "reveals_identity": 2}
    assert summary["one_side_raters"] == {"lazy": {"side": "A", "share": 1.0, "n": 10}}
    assert "smollm2" in identity_terms(["smollm2-135m"]) and "smollm" in identity_terms(["smollm2-135m"])
    assert "seed" not in identity_terms(["tiny:llama,seed=1"])
    _, summary = flag([{"rating": 3}], QcConfig())
    assert set(summary["not_applied"]) == {"too_fast", "one_side", "reveals_identity"}


def test_build_feedback_groups(tmp_path):
    store, conv = _store_with(tmp_path, [1, 4, 5, 8, 6])
    out = tmp_path / "fb.jsonl"
    p = cli("data", "build", "feedback", "--db", store.url, "--output", str(out))
    assert p.exit_code == 0, p.output
    groups = list(read_jsonl(out))
    assert [g.scores for g in groups] == [[4, 0], [1, 0], [0, 1], [0, 4], [0, 2]]
    g = groups[2]
    assert g.kind == "ranked" and g.source == "feedback" and g.responses == [" one answer", " another answer"]
    assert g.context.startswith("Human: question 0\n\nAssistant: one answer\n\nHuman: question 1")
    assert g.context.endswith("Human: question 2\n\nAssistant:")
    assert g.metadata["split_key"] == conv.id and g.metadata["rating"] == 5 and g.metadata["strength"] == 1
    assert "qc_flags" in g.metadata and "too_fast" in g.metadata["qc_flags"]  # rated instantly in this test
    # Near-ties dropped on request, and QC exclusion is counted by rule.
    p = cli("data", "build", "feedback", "--db", str(tmp_path / "f.sqlite"), "--output", str(out),
            "--min-strength", "2", "--exclude-flagged")
    assert p.exit_code == 0 and "5 qc: too_fast" in _flat(p.output)
    p = cli("data", "build", "feedback", "--db", str(tmp_path / "f.sqlite"), "--output", str(out), "--min-strength", "2")
    assert "2 strength below 2" in _flat(p.output) and len(list(read_jsonl(out))) == 3


def test_build_feedback_identical_and_bad_db(tmp_path):
    store, _ = _store_with(tmp_path, [2], responses=("same", "same "))
    out = tmp_path / "fb.jsonl"
    p = cli("data", "build", "feedback", "--db", store.url, "-o", str(out))
    assert p.exit_code == 0 and "1 identical responses" in _flat(p.output)
    p = cli("data", "build", "feedback", "--db", str(tmp_path / "no.db"), "-o", str(out))
    assert isinstance(p.exception, HHHLabError) and "does not exist" in str(p.exception)
    p = cli("data", "build", "feedback", "-o", str(out))
    assert isinstance(p.exception, HHHLabError) and "--db" in str(p.exception)


def test_elo_from_the_database_by_model_and_condition(tmp_path):
    from hhhlab.feedback.analysis import analyze
    from hhhlab.feedback.config import EloConfig

    _store, _ = _store_with(tmp_path, [1, 2, 6, 3])
    r = analyze(EloConfig(db=str(tmp_path / "f.sqlite"), by="model", n_boot=50))
    assert set(r["elo"]) == {"m1", "m2"} and r["systems"]["m1"]["non_embedding_params"] == 10
    assert r["win_table"]["m1"]["m2"]["rate"] == 0.75
    with pytest.raises(Exception, match="no comparisons between two different conditions"):
        analyze(EloConfig(db=str(tmp_path / "f.sqlite"), by="condition", n_boot=50))


def _flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def cli(*args: str):
    """The hhhlab CLI in-process (a subprocess costs an import of torch on a busy machine)."""
    from typer.testing import CliRunner

    from hhhlab.cli import app

    return CliRunner().invoke(app, list(args))


def test_feedback_groups_train_a_preference_model(tmp_path):
    """The built groups are ordinary preference data: ``pm train`` reads and trains on them."""
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.trainer import train_and_evaluate

    store, _ = _store_with(tmp_path, [1, 3, 6, 8, 2, 7])
    out = tmp_path / "fb.jsonl"
    assert cli("data", "build", "feedback", "--db", store.url, "--output", str(out)).exit_code == 0
    metrics = train_and_evaluate(TrainConfig(
        model="tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", objective="preference", train=str(out),
        eval=str(out), output=str(tmp_path / "pm"), max_steps=2, batch_size=2, dtype="float32", device="cpu",
        progress=False, record_run=False))
    assert metrics["n_eval"] == 6 and 0.0 <= metrics["accuracy"] <= 1.0
