"""The engine equals naive one-request-at-a-time scoring, whatever the batching or prefix sharing.

The reference here is written independently of the engine: one request per forward pass of the
plain transformers model, log-softmax over the whole vocabulary, read at the continuation.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hhhlab.errors import RequestError
from hhhlab.models.engine import Engine, GenerationConfig, ScoreRequest
from hhhlab.models.load import load_model

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "Human",
    "Assistant",
    "Paris",
    "capital",
    "France",
    "blue",
    "sky",
    "why",
    "is",
    "it",
    "that",
    "function",
    "return",
    "def",
    "add",
    "numbers",
    "quick",
    "brown",
    "fox",
    "lazy",
    "dog",
    "scattering",
]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")


FP32_TOL = 1e-4
BF16_TOL = 0.05  # per request summed log-prob, tiny models: bf16 engine vs bf16 naive forward


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def lm(request, device):
    spec = {
        "llama": "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2",
        "gpt2": "tiny:gpt2,layers=2,hidden=64,heads=4",
    }[request.param]
    return load_model(spec, device=device, dtype="float32")


@torch.no_grad()
def naive(lm, ctx: list[int], cont: list[int]) -> tuple[float, list[float], bool]:
    ids = torch.tensor([ctx + cont], device=lm.device)
    logits = lm.model(input_ids=ids).logits[0].float()
    pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=lm.device)
    target = torch.tensor(cont, device=lm.device)
    lp = F.log_softmax(logits[pos], -1).gather(-1, target[:, None])[:, 0]
    return float(lp.sum()), lp.tolist(), bool((logits[pos].argmax(-1) == target).all())


def workload(seed: int = 0) -> list[tuple[str, str]]:
    """Shared long prefix, nested prefixes (one question, several answers), and loners."""
    rng = random.Random(seed)
    hhh = "Human: " + _text(rng, 120) + "\n\nAssistant: " + _text(rng, 60) + "\n\n"
    reqs = []
    for _ in range(6):
        question = hhh + "Human: " + _text(rng, rng.randint(1, 25)) + "\n\nAssistant:"
        for _ in range(rng.randint(1, 3)):
            reqs.append((question, " " + _text(rng, rng.randint(1, 12))))
    other = _text(rng, 150)
    reqs += [
        (other + " " + _text(rng, rng.randint(0, 5)), " " + _text(rng, rng.randint(1, 4)))
        for _ in range(5)
    ]
    reqs += [
        (_text(rng, rng.randint(1, 40)), " " + _text(rng, rng.randint(1, 8))) for _ in range(6)
    ]
    reqs.append(("", "the cat"))  # empty context: scored after the BOS token
    rng.shuffle(reqs)
    return reqs


def check_against_naive(lm, engine: Engine, reqs, tol: float) -> float:
    results = engine.score(reqs)
    worst = 0.0
    for i, (r, res) in enumerate(zip(reqs, results)):
        ctx, cont = engine.encode_pair(*r, i)
        ref_lp, ref_tokens, ref_greedy = naive(lm, ctx, cont)
        assert res.n_tokens == len(cont) == len(res.token_logprobs)
        worst = max(
            worst,
            abs(res.logprob - ref_lp),
            *(abs(a - b) for a, b in zip(res.token_logprobs, ref_tokens)),
        )
        assert abs(res.logprob - ref_lp) < tol, (i, res.logprob, ref_lp)
        if abs(res.logprob - ref_lp) < 1e-5:
            assert res.is_greedy == ref_greedy
    return worst


def test_matches_naive_with_shared_and_nested_prefixes(lm):
    engine = Engine(lm, batch_size=4, prefix_overhead=32)
    reqs = workload()
    plan = engine.plan([engine.encode_pair(*r, i) for i, r in enumerate(reqs)])
    # The test must exercise reuse: the HHH prompt and the other shared context are groups.
    shared = [g for g in plan if g.prefix_len > 0]
    assert len(shared) >= 2 and max(g.prefix_len for g in shared) > 100
    assert sorted(i for g in plan for i in g.members) == list(range(len(reqs)))
    check_against_naive(lm, engine, reqs, FP32_TOL)


def test_matches_naive_without_prefix_reuse_and_generic_path(lm):
    reqs = workload(1)
    check_against_naive(lm, Engine(lm, batch_size=5, prefix_reuse=False), reqs, FP32_TOL)
    check_against_naive(lm, Engine(lm, batch_size=5, fast_path=False), reqs, FP32_TOL)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batch_size_invariance(lm, batch_size):
    reqs = workload(2)
    ref = [r.logprob for r in Engine(lm, batch_size=3).score(reqs)]
    got = Engine(lm, batch_size=batch_size).score(reqs)
    assert max(abs(a - b.logprob) for a, b in zip(ref, got)) < FP32_TOL


def test_sharding_invariance(lm):
    """Two processes each scoring half (interleaved shards, so prefix groups split) give what one
    process scoring everything gives: grouping changes the work, never the numbers."""
    reqs = workload(6)
    whole = Engine(lm, batch_size=8, prefix_overhead=32).score(reqs)
    shards = [Engine(lm, batch_size=8, prefix_overhead=32).score(reqs[k::2]) for k in (0, 1)]
    merged = [shards[i % 2][i // 2] for i in range(len(reqs))]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(whole, merged)) < FP32_TOL
    assert [a.is_greedy for a in whole] == [b.is_greedy for b in merged]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_token_requests_match_naive(tiny_llama, data):
    vocab = tiny_llama.model.config.vocab_size
    tokens = st.integers(0, vocab - 1)
    prefix = data.draw(st.lists(tokens, min_size=0, max_size=80), label="prefix")
    pairs = data.draw(
        st.lists(
            st.tuples(
                st.lists(tokens, min_size=1, max_size=20), st.lists(tokens, min_size=1, max_size=10)
            ),
            min_size=1,
            max_size=9,
        )
    )
    pairs = [(prefix + c, k) for c, k in pairs]
    bs = data.draw(st.sampled_from([1, 2, 7, 32]), label="batch_size")
    engine = Engine(tiny_llama, batch_size=bs, min_prefix=1, prefix_overhead=0)
    for (ctx, cont), res in zip(pairs, engine.score_tokens(pairs)):
        assert abs(res.logprob - naive(tiny_llama, ctx, cont)[0]) < FP32_TOL


def test_bf16_within_stated_bound():
    lm32 = load_model("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", dtype="float32")
    lm16 = load_model("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", dtype="bfloat16")
    reqs = workload(3)[:12]
    engine = Engine(lm16, batch_size=4, prefix_overhead=32)
    worst = check_against_naive(lm16, engine, reqs, BF16_TOL)
    assert worst > 0  # a bf16 run that matches exactly would mean fp32 ran
    fp32 = Engine(lm32).score(reqs)
    for a, b in zip(fp32, engine.score(reqs)):
        assert abs(a.logprob - b.logprob) < BF16_TOL * max(1, a.n_tokens)


def test_is_greedy(tiny_llama):
    engine = Engine(tiny_llama)
    ctx = "Human: What is the capital of France?\n\nAssistant:"
    greedy = engine.generate([ctx], GenerationConfig(max_new_tokens=6, temperature=0))[0][0]
    if greedy.startswith(" "):  # the lm-eval boundary moves a context's trailing space anyway
        ctx, greedy = ctx + " ", greedy[1:]
    res = engine.score([(ctx, greedy)])[0]
    assert res.is_greedy
    c_ids, k_ids = engine.encode_pair(ctx, greedy)
    other = (k_ids[0] + 1) % len(tiny_llama.tokenizer)
    alt = engine.score_tokens([(c_ids, [other] + k_ids[1:])])[0]
    assert not alt.is_greedy


def test_left_truncation_counts_dropped_tokens(tiny_llama):
    engine = Engine(tiny_llama, max_length=64, truncation="left")
    ctx = _text(random.Random(4), 80)
    c_ids, k_ids = engine.encode_pair(ctx, " the cat")
    res = engine.score([(ctx, " the cat")])[0]
    assert res.truncated == len(c_ids) + len(k_ids) - 64 > 0
    kept = c_ids[res.truncated :]
    assert abs(res.logprob - naive(tiny_llama, kept, k_ids)[0]) < FP32_TOL


def test_errors_name_the_item_and_run_nothing(tiny_llama, monkeypatch):
    engine = Engine(tiny_llama, max_length=64)
    calls = []
    monkeypatch.setattr(engine.runner, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(RequestError, match="request 1: the continuation is empty"):
        engine.score([("a", " b"), ("a", ""), ("c", " d")])
    with pytest.raises(
        RequestError, match=r"request 2: \d+ tokens exceed the model's window of 64"
    ):
        engine.score([("a", " b"), ("a", " c"), (_text(random.Random(5), 80), " d")])
    with pytest.raises(RequestError, match="request 0: expected a ScoreRequest"):
        engine.score([("only one",)])
    with pytest.raises(RequestError, match="2 of 3 requests"):
        engine.score([ScoreRequest("a", ""), ("ok", " fine"), ("b", "")])
    with pytest.raises(RequestError, match="prompt 0"):
        engine.generate([_text(random.Random(6), 80)], GenerationConfig(max_new_tokens=4))
    assert calls == []


def test_empty_request_list(tiny_llama):
    assert Engine(tiny_llama).score([]) == []
    assert Engine(tiny_llama).generate([]) == []


def test_lm_eval_token_boundary(tiny_llama):
    engine = Engine(tiny_llama)
    tok = tiny_llama.tokenizer
    def enc(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    # Trailing spaces of the context move to the continuation; the context is its own encoding.
    ctx, cont = engine.encode_pair("The capital of France is ", "Paris")
    assert ctx == enc("The capital of France is")
    assert ctx + cont == enc("The capital of France is Paris")
    ctx, cont = engine.encode_pair("", "the cat")
    assert ctx == [engine.prefix_token_id] and cont == enc("the cat")
    # score() tokenises in one batch; it must split exactly as encode_pair does.
    reqs = workload(5)
    batched = engine.score(reqs)
    for i, (r, res) in enumerate(zip(reqs, batched)):
        assert res.n_tokens == len(engine.encode_pair(*r, i)[1])


@pytest.mark.slow
def test_default_model_fast_path_matches_naive():
    """The embedded SmolLM2 (Llama-family, GQA 9/3 heads) takes the block-runner path and matches."""
    from hhhlab.models.runner import LlamaRunner

    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    engine = Engine(lm, batch_size=4, prefix_overhead=0)
    assert isinstance(engine.runner, LlamaRunner)
    hhh = (
        "Human: What is the capital of France?\n\nAssistant: The capital of France is Paris.\n\n"
        * 3
    )
    reqs = [
        (hhh + "Human: Name a colour.\n\nAssistant:", a)
        for a in (" Blue.", " Red, I think.", " Paris")
    ]
    reqs.append(("The capital of France is", " Paris"))
    assert any(g.prefix_len > 50 for g in engine.plan([engine.encode_pair(*r) for r in reqs]))
    check_against_naive(lm, engine, reqs, FP32_TOL)


# -- tree rows: one context run once for all its continuations ----------------------------------


def packed_workload(
    vocab: int, prefix_len: int, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """Contexts shared by 2-6 continuations of very different lengths (1 to 30 tokens), mixed with
    requests sharing only the prefix and requests sharing nothing. Shared contexts are equal
    lists, not one object: packing must go by value."""
    rng = random.Random(seed)

    def toks(n: int) -> list[int]:
        return [rng.randrange(vocab) for _ in range(n)]

    prefix = toks(prefix_len)
    pairs = []
    for k in (2, 6, 3, 4, 5):
        ctx = prefix + toks(rng.randint(1, 20))
        pairs += [(list(ctx), toks(n)) for n in [30, 1, 5, 2, 12, 3][:k]]
    pairs += [(prefix + toks(rng.randint(1, 20)), toks(rng.randint(1, 8))) for _ in range(4)]
    pairs += [(toks(rng.randint(1, 30)), toks(rng.randint(1, 8))) for _ in range(4)]
    rng.shuffle(pairs)
    return pairs


def packed_rows(engine: Engine, pairs) -> list[list[int]]:
    """The tree rows the engine will run, over all groups and batches."""
    return [row for g in engine.plan(pairs) for batch in engine._batches(pairs, g) for row in batch]


def check_tokens_against_naive(lm, results, pairs) -> None:
    for i, ((ctx, cont), res) in enumerate(zip(pairs, results)):
        ref_lp, ref_tokens, ref_greedy = naive(lm, ctx, cont)
        assert res.n_tokens == len(cont) == len(res.token_logprobs)
        assert abs(res.logprob - ref_lp) < FP32_TOL, (i, res.logprob, ref_lp)
        assert max(abs(a - b) for a, b in zip(res.token_logprobs, ref_tokens)) < FP32_TOL, i
        assert res.is_greedy == ref_greedy, i


@pytest.mark.parametrize("prefix_len", [0, 60])
def test_shared_contexts_packed_match_naive(lm, prefix_len):
    pairs = packed_workload(lm.model.config.vocab_size, prefix_len)
    engine = Engine(lm, batch_size=7, prefix_overhead=0)
    rows = packed_rows(engine, pairs)
    assert sorted(i for row in rows for i in row) == list(range(len(pairs)))
    assert max(len(row) for row in rows) >= 4  # really packed
    lengths = [[len(pairs[i][1]) for i in row] for row in rows]
    assert any(max(n) >= 30 and min(n) <= 2 for n in lengths)  # branches of unequal lengths
    if prefix_len:
        assert any(g.prefix_len >= prefix_len for g in engine.plan(pairs))
    check_tokens_against_naive(lm, engine.score_tokens(pairs), pairs)


def test_packing_batch_size_invariance(lm):
    pairs = packed_workload(lm.model.config.vocab_size, 40, seed=1)
    ref = Engine(lm, batch_size=3, pack_shared_contexts=False, prefix_overhead=0)
    assert max(len(row) for row in packed_rows(ref, pairs)) == 1
    ref_res = ref.score_tokens(pairs)
    for bs in (1, 2, 7, 32):
        engine = Engine(lm, batch_size=bs, prefix_overhead=0)
        rows = packed_rows(engine, pairs)
        assert max(len(row) for row in rows) == min(bs, 6)  # a row holds at most bs continuations
        got = engine.score_tokens(pairs)
        assert max(abs(a.logprob - b.logprob) for a, b in zip(ref_res, got)) < FP32_TOL, bs
        assert [a.is_greedy for a in ref_res] == [b.is_greedy for b in got], bs


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_shared_contexts_match_naive(tiny_gpt2, data):
    vocab = tiny_gpt2.model.config.vocab_size
    tokens = st.integers(0, vocab - 1)
    prefix = data.draw(st.lists(tokens, min_size=0, max_size=40), label="prefix")
    contexts = data.draw(
        st.lists(st.lists(tokens, min_size=1, max_size=12), min_size=1, max_size=3)
    )
    pairs = data.draw(
        st.lists(
            st.tuples(st.sampled_from(contexts), st.lists(tokens, min_size=1, max_size=10)),
            min_size=1,
            max_size=12,
        )
    )
    pairs = [(prefix + c, k) for c, k in pairs]
    bs = data.draw(st.sampled_from([1, 2, 7, 32]), label="batch_size")
    engine = Engine(tiny_gpt2, batch_size=bs, min_prefix=1, prefix_overhead=0)
    for (ctx, cont), res in zip(pairs, engine.score_tokens(pairs)):
        assert abs(res.logprob - naive(tiny_gpt2, ctx, cont)[0]) < FP32_TOL


@pytest.mark.parametrize("batch_size", [1, 7])
def test_packed_is_greedy(tiny_llama, batch_size):
    """Greedy flags per branch: the first token is judged at the shared context's last output."""
    rng = random.Random(7)
    vocab = tiny_llama.model.config.vocab_size
    prefix = [rng.randrange(vocab) for _ in range(40)]
    ctx = prefix + [rng.randrange(vocab) for _ in range(12)]
    greedy: list[int] = []
    with torch.no_grad():
        for _ in range(5):
            logits = tiny_llama.model(input_ids=torch.tensor([ctx + greedy])).logits[0, -1]
            greedy.append(int(logits.argmax()))

    def other(t: int) -> int:
        return (t + 1) % vocab

    conts = [
        greedy,
        greedy[:1],
        [other(greedy[0])] + greedy[1:],
        greedy[:-1] + [other(greedy[-1])],
        greedy[:3],
    ]
    pairs = [(ctx, c) for c in conts] + [(prefix + [1, 2, 3], [4, 5])]
    engine = Engine(tiny_llama, batch_size=batch_size, min_prefix=8, prefix_overhead=0)
    assert max(len(row) for row in packed_rows(engine, pairs)) == min(batch_size, 5)
    results = engine.score_tokens(pairs)
    assert [r.is_greedy for r in results[:5]] == [True, True, False, False, True]
    check_tokens_against_naive(tiny_llama, results, pairs)


def test_packing_with_truncation_and_a_small_window(tiny_llama):
    """Left truncation depends on each continuation's length, so only continuations of equal
    length keep equal contexts; and a row never holds more tokens than the window."""
    engine = Engine(tiny_llama, max_length=64, truncation="left", batch_size=16)
    rng = random.Random(8)
    long_ctx, short_ctx = _text(rng, 80), _text(rng, 12)
    conts = [" the cat", " the dog", " a", " it", " the quick brown fox is lazy", " why"]
    conts += [" " + _text(rng, rng.randint(4, 9)) for _ in range(6)]
    reqs = [(long_ctx, c) for c in conts] + [(short_ctx, c) for c in conts]
    fitted = [engine._fit(*engine.encode_pair(*r, i), i) for i, r in enumerate(reqs)]
    pairs = [
        (ctx, engine.encode_pair(*r, i)[1]) for i, (r, (ctx, _)) in enumerate(zip(reqs, fitted))
    ]
    rows = packed_rows(engine, pairs)
    widths = [len(pairs[row[0]][0]) + sum(len(pairs[i][1]) for i in row) for row in rows]
    assert max(widths) <= 64
    short = [row for row in rows if pairs[row[0]][0] == pairs[-1][0]]
    assert len(short) >= 2 and max(len(row) for row in short) >= 2  # packed, split by the window
    results = engine.score(reqs)
    assert [r.truncated for r in results] == [dropped for _, dropped in fitted]
    assert sum(r.truncated > 0 for r in results) == len(conts)  # every long-context request
    check_tokens_against_naive(tiny_llama, results, pairs)


def test_packed_rows_through_the_reference_attention(lm, monkeypatch):
    """On CUDA a tree mask goes through ``attention_reference`` (plain math): run that path here
    on the CPU and check it gives the same numbers."""
    import hhhlab.models.runner as runner_module
    from hhhlab.models.attention import attention_reference, attention_with_lse

    masked = []

    def reference_for_masks(q, k, v, *, scale, causal=False, mask=None):
        if mask is None:
            return attention_with_lse(q, k, v, scale=scale, causal=causal)
        masked.append(mask.shape)
        return attention_reference(q, k, v, scale=scale, causal=causal, mask=mask)

    monkeypatch.setattr(runner_module, "attention_with_lse", reference_for_masks)
    pairs = packed_workload(lm.model.config.vocab_size, 30, seed=2)
    results = Engine(lm, batch_size=7, prefix_overhead=0).score_tokens(pairs)
    assert masked
    check_tokens_against_naive(lm, results, pairs)
