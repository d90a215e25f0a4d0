"""Generation: greedy equals step-by-step re-encoding, stops cut and end sampling, seeds reproduce
independent of batching, the block-runner path samples what transformers' cache path does, and
banned strings are never sampled (redrawn per sample, still independent of batching)."""

from __future__ import annotations

import pytest
import torch

from hhhlab.errors import RequestError
from hhhlab.models.engine import Engine, GenerationConfig
from hhhlab.models.load import load_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SPECS = {
    "llama": "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2",
    "gpt2": "tiny:gpt2,layers=2,hidden=64,heads=4",
}


pytestmark = pytest.mark.usefixtures("one_thread")


HHH = (
    "Human: What is the capital of France?\n\nAssistant: The capital of France is Paris.\n\n"
    "Human: Can you help me write a function in Python that adds two numbers?\n\n"
    "Assistant: Sure. def add(a, b): return a + b\n\n"
)
PROMPTS = [
    HHH + "Human: Why is the sky blue?\n\nAssistant:",
    HHH + "Human: hi\n\nAssistant:",
    "The quick brown fox",
    "Question: Why?",
]


@pytest.fixture(
    scope="module",
    params=[(a, d) for a in ("llama", "gpt2") for d in DEVICES],
    ids=lambda p: "-".join(p),
)
def lm(request):
    arch, device = request.param
    return load_model(SPECS[arch], device=device, dtype="float32")


@torch.no_grad()
def greedy_by_reencoding(lm, prompt: str, n: int) -> str:
    ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for _ in range(n):
        logits = lm.model(input_ids=torch.tensor([ids + out], device=lm.device)).logits[0, -1]
        tok = int(logits.argmax())
        if tok == lm.tokenizer.eos_token_id:
            break
        out.append(tok)
    return lm.tokenizer.decode(out, skip_special_tokens=True)


def test_greedy_matches_reencoding(lm):
    cfg = GenerationConfig(max_new_tokens=12, temperature=0, num_samples=2)
    for engine in (Engine(lm, min_prefix=8, prefix_overhead=0), Engine(lm, fast_path=False)):
        got = engine.generate(PROMPTS, cfg)
        for prompt, samples in zip(PROMPTS, got):
            assert samples == [greedy_by_reencoding(lm, prompt, 12)] * 2


def test_samples_reproducible_and_independent_of_batching(lm):
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, num_samples=5, seed=3)
    together = Engine(lm, batch_size=32, min_prefix=8, prefix_overhead=0).generate(PROMPTS, cfg)
    assert together == Engine(lm, batch_size=32, min_prefix=8, prefix_overhead=0).generate(
        PROMPTS, cfg
    )
    one_by_one = [Engine(lm, batch_size=1).generate([p], cfg)[0] for p in PROMPTS]
    assert one_by_one == together
    generic = Engine(lm, fast_path=False).generate(PROMPTS, cfg)
    assert generic == together
    assert all(len(s) == 5 for s in together)
    assert len({s for samples in together for s in samples}) > 5  # samples differ
    other_seed = Engine(lm).generate(PROMPTS, GenerationConfig(**{**cfg.__dict__, "seed": 4}))
    assert other_seed != together


def test_stop_sequences_cut_and_end_each_sample(lm):
    engine = Engine(lm, batch_size=8)
    cfg = GenerationConfig(max_new_tokens=16, temperature=1.0, num_samples=6, seed=1)
    free = engine.generate(PROMPTS[:2], cfg)
    # Pick a stop string that occurs mid-way in some sample, so some samples stop early.
    sample = next(s for samples in free for s in samples if len(s) > 6)
    stop = sample[3:5]
    stopped = engine.generate(
        PROMPTS[:2], GenerationConfig(**{**cfg.__dict__, "stop": [stop, "\n\nHuman:"]})
    )
    for a, b in zip(free, stopped):
        for full, cut in zip(a, b):
            assert stop not in cut
            assert full.startswith(cut)
            assert cut == full.split(stop)[0].split("\n\nHuman:")[0]


def test_stopped_samples_are_not_decoded_further(tiny_llama, monkeypatch):
    engine = Engine(tiny_llama)
    widths = []
    forward = engine.runner.forward
    monkeypatch.setattr(
        engine.runner,
        "forward",
        lambda ids, *a, **k: widths.append(ids.shape[0]) or forward(ids, *a, **k),
    )
    engine.generate(
        ["Human: hi"], GenerationConfig(max_new_tokens=30, num_samples=4, stop=[" ", "e", "a", "o"])
    )
    assert (
        len(widths) < 30 or widths[-1] < 4
    )  # all samples stopped early, or finished ones were dropped


def test_max_new_tokens_and_zero(tiny_llama, monkeypatch):
    engine = Engine(tiny_llama)
    calls = []
    forward = engine.runner.forward
    monkeypatch.setattr(
        engine.runner,
        "forward",
        lambda ids, *a, **k: calls.append(ids.shape) or forward(ids, *a, **k),
    )
    out = engine.generate(
        ["Human: hi"], GenerationConfig(max_new_tokens=5, temperature=0.7, num_samples=3)
    )
    assert len(out[0]) == 3
    # One prompt pass, then one pass per new token except the last (its logits are never needed).
    assert len(calls) <= 5 and all(shape[1] == 1 for shape in calls[1:])
    assert engine.generate(["x"], GenerationConfig(max_new_tokens=0, num_samples=2)) == [["", ""]]


# -- banned strings ---------------------------------------------------------------------------
BAN = ("Human:", "-----", "::")


def biased(spec: str, device: str = "cpu", bias: float = 6.0):
    """A tiny model whose LM head favours the tokens "Human", ":" and "-----" (+``bias`` logits):
    unbanned, its samples often contain "Human:" (two tokens), "-----" and "::"."""
    lm = load_model(spec, device=device, dtype="float32")
    old = lm.model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True, device=lm.device)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        for token in ("Human", ":", "-----"):
            head.bias[lm.tokenizer.convert_tokens_to_ids(token)] = bias
    lm.model.set_output_embeddings(head)
    return lm


@pytest.fixture(
    scope="module",
    params=[(a, d) for a in ("llama", "gpt2") for d in DEVICES],
    ids=lambda p: "-".join(p),
)
def biased_lm(request):
    arch, device = request.param
    return biased(SPECS[arch], device)


def engines(lm, batch_size: int = 7):
    """The block-runner path (with prefix reuse) and the generic transformers path."""
    return (
        Engine(lm, batch_size=batch_size, min_prefix=8, prefix_overhead=0),
        Engine(lm, batch_size=batch_size, fast_path=False),
    )


def test_banned_strings_are_never_sampled(biased_lm):
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=0.9, num_samples=8, seed=0)
    banned_cfg = GenerationConfig(**{**cfg.__dict__, "ban": BAN})
    for engine in engines(biased_lm):
        free = [s for samples in engine.generate(PROMPTS[:2], cfg) for s in samples]
        for b in BAN:  # the test could fail: unbanned, every banned string is sampled
            assert sum(b in s for s in free) >= 3, b
        got = [s for samples in engine.generate(PROMPTS[:2], banned_cfg) for s in samples]
        assert not [s for s in got if any(b in s for b in BAN)]
        # Only the token completing "Human:" is refused, not "Human" itself (the ban spans tokens).
        assert sum("Human" in s for s in got) >= 3 and sum(":" in s for s in got) >= 3
        assert got != free


def test_banned_sampling_independent_of_batch_size_and_path(biased_lm):
    # 3 samples per prompt: batch size 7 decodes 2 prompts together, 32 all 4, 1 one at a time.
    cfg = GenerationConfig(
        max_new_tokens=10, temperature=1.0, top_p=0.9, num_samples=3, seed=2, ban=BAN
    )
    by_batch = {bs: Engine(biased_lm, batch_size=bs).generate(PROMPTS, cfg) for bs in (1, 7, 32)}
    assert by_batch[1] == by_batch[7] == by_batch[32]
    assert engines(biased_lm)[1].generate(PROMPTS, cfg) == by_batch[1]
    one_by_one = [Engine(biased_lm, batch_size=7).generate([p], cfg)[0] for p in PROMPTS]
    assert one_by_one == by_batch[1]


@torch.no_grad()
def greedy_with_ban_by_reencoding(lm, prompt: str, n: int, ban) -> str:
    """Oracle: at each step the highest-scoring token whose text does not complete a ban."""
    tok = lm.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    for _ in range(n):
        logits = lm.model(input_ids=torch.tensor([ids + out], device=lm.device)).logits[0, -1]
        before = tok.decode(out, skip_special_tokens=True)
        for t in logits.argsort(descending=True).tolist():
            after = tok.decode(out + [t], skip_special_tokens=True)
            if t == tok.eos_token_id or not any(b in after and b not in before for b in ban):
                break
        if t == tok.eos_token_id:
            break
        out.append(t)
    return tok.decode(out, skip_special_tokens=True)


def test_greedy_with_ban_takes_the_next_best_allowed_token(biased_lm):
    cfg = GenerationConfig(max_new_tokens=12, temperature=0, num_samples=2, ban=BAN)
    free = Engine(biased_lm).generate(PROMPTS, GenerationConfig(max_new_tokens=12, temperature=0))
    assert any(b in samples[0] for samples in free for b in BAN)  # greedy hits a ban unbanned
    want = [greedy_with_ban_by_reencoding(biased_lm, p, 12, BAN) for p in PROMPTS]
    for engine in engines(biased_lm, batch_size=3):
        got = engine.generate(PROMPTS, cfg)
        assert got == [[w, w] for w in want]
    assert not any(b in w for w in want for b in BAN)


def test_a_sample_that_cannot_avoid_a_ban_ends_there(tiny_llama, monkeypatch):
    """Out of draws (here none allowed), the sample ends before the token completing the ban."""
    import hhhlab.models.engine as engine_module

    prompt = "Human: hi\n\nAssistant:"
    cfg = GenerationConfig(max_new_tokens=8, temperature=0)
    assert Engine(tiny_llama).generate([prompt], cfg) == [[":" * 8]]
    monkeypatch.setattr(engine_module, "BAN_TRIES", 0)
    for engine in engines(tiny_llama):
        assert engine.generate([prompt], GenerationConfig(**{**cfg.__dict__, "ban": ["::"]})) == [
            [":"]
        ]


@pytest.mark.parametrize("ban", ["Human:", ("Human:", ""), (None,)])
def test_ban_must_be_non_empty_strings(tiny_llama, ban):
    with pytest.raises(RequestError, match="ban must be"):
        Engine(tiny_llama).generate(["x"], GenerationConfig(max_new_tokens=2, ban=ban))
