"""One tokenisation: the engine's scoring and training batches give identical token ids for
(context, continuation), by lm-evaluation-harness's boundary rule, on the hard cases."""

import pytest
import torch

from hhhlab.models.engine import Engine
from hhhlab.models.tokenize import TokenizationError, encode_pair
from hhhlab.train.batching import build_batch, encode_group
from hhhlab.train.preference_model import PreferenceModel

pytestmark = pytest.mark.usefixtures("one_thread")

HARD = [
    ("Question: what?\nAnswer:", "  two leading spaces"),  # leading spaces
    ("", " an empty context"),
    ("", "no space, empty context"),
    ("Human: Hi there.\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.\n\nAssistant:",
     " Why did the fox cross the road?"),  # a multi-turn dialogue
    ("The answer is ", "Paris."),  # a context ending in a space: the space moves to the continuation
    ("Ends with newlines\n\n", "next paragraph"),
    ("Caf\u00e9 na\u00efve \u2014 \u65e5\u672c\u8a9e", " \u00fcber \U0001f642 emoji"),  # non-ASCII
    ("Hello wor", "ld"),  # a word split across the boundary: the BPE merges it in the whole encoding
    ("1234", "5678"),
]


def lm_eval_reference(tok, context, continuation):
    """lm-evaluation-harness 0.4's ``_encode_pair``, written out independently."""
    n = len(context) - len(context.rstrip())
    if n:
        continuation, context = context[-n:] + continuation, context[:-n]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    if not context:
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return [bos], whole
    return ctx, whole[len(ctx):]


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def lm(request):
    return request.getfixturevalue(request.param)


def test_engine_and_training_encode_the_hard_cases_identically(lm):
    engine = Engine(lm)
    for context, continuation in HARD:
        ref = lm_eval_reference(lm.tokenizer, context, continuation)
        assert engine.encode_pair(context, continuation) == ref, (context, continuation)
        assert encode_pair(lm.tokenizer, context, continuation) == ref
        g = encode_group(lm.tokenizer, context, [continuation, " other"], [1, 0], max_length=512)
        assert (g.context, g.responses[0]) == ref, (context, continuation)
        # and the training batch's LM targets are exactly those ids, predicted from the same positions
        batch = build_batch([g], eoc_id=None, pad_id=0, responses="best", lm="best")
        assert batch.input_ids[0, : len(ref[0]) + len(ref[1])].tolist() == ref[0] + ref[1]
        assert batch.lm_target.tolist() == ref[1]


def test_training_scores_equal_engine_scores_on_the_hard_cases(lm):
    pm = PreferenceModel(lm.model, lm.tokenizer, scoring="mean_logprob")  # no head: nothing added to lm
    engine = Engine(lm)
    for context, continuation in HARD:
        (r,) = engine.score([(context, continuation)])
        with torch.no_grad():
            (s,) = pm.score(context, [continuation])
        assert s == pytest.approx(r.logprob / r.n_tokens, abs=1e-4), (context, continuation)


def test_an_empty_continuation_is_refused_on_both_paths(tiny_llama):
    from hhhlab.errors import RequestError

    with pytest.raises(TokenizationError, match="empty"):
        encode_pair(tiny_llama.tokenizer, "context", "")
    with pytest.raises(RequestError, match="request 0: the continuation is empty"):
        Engine(tiny_llama).encode_pair("context", "")
