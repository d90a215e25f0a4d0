"""The distillation corpus (distill/corpus.py): files, packing, the held-out split, the paper's mix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hhhlab.distill.corpus import build_corpus, is_heldout, split_text_file
from hhhlab.errors import DataError


@pytest.fixture(scope="module")
def encode(tiny_llama):
    tok = tiny_llama.tokenizer
    return lambda texts: tok(texts, add_special_tokens=False)["input_ids"]


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_jsonl_is_packed_into_full_windows_without_heldout_documents(tmp_path, encode):
    texts = [f"document number {i} says hello world again and again." for i in range(200)]
    path = _jsonl(tmp_path / "c.jsonl", texts)
    train = build_corpus(str(path), encode, context_length=16, n_windows=20)
    assert train.windows.shape == (20, 16) and train.windows.dtype == np.int32
    held = build_corpus(str(path), encode, context_length=16, split="heldout")
    assert held.n_tokens > 0 and held.checksum != train.checksum
    # the same call gives the same windows (and checksum); another seed another order
    assert build_corpus(str(path), encode, context_length=16, n_windows=20).checksum == train.checksum
    assert build_corpus(str(path), encode, context_length=16, n_windows=20, seed=1).checksum != train.checksum
    n_held = sum(is_heldout(t) for t in texts)
    assert 0 < n_held < 40


def test_too_little_text_is_an_error_before_any_work(tmp_path, encode):
    path = _jsonl(tmp_path / "c.jsonl", ["short text"] * 5)
    with pytest.raises(DataError, match="fewer than the 1,600 asked for"):
        build_corpus(str(path), encode, context_length=16, n_windows=100)


def test_malformed_rows_and_missing_files_name_where(tmp_path, encode):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "wrong key"}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        build_corpus(str(bad), encode, context_length=4)
    with pytest.raises(DataError, match="not found"):
        build_corpus(str(tmp_path / "none.txt"), encode, context_length=4)
    with pytest.raises(DataError, match="--data-dir"):
        build_corpus("mix", encode, context_length=4)


def test_wikitext_articles_are_documents(tmp_path):
    raw = " = A = \n \n body a \n \n = = sec = = \n \n more a \n \n = B = \n \n body b \n"
    (tmp_path / "w.raw").write_text(raw)
    docs = split_text_file(tmp_path / "w.raw")
    assert len(docs) == 2 and docs[0].startswith("= A =") and "more a" in docs[0] and "body b" in docs[1]


def test_the_paper_mix_on_shared_data_is_half_stackexchange(shared_data, encode, tmp_path, tiny_llama):
    # a small copy: one wikitext file and one StackExchange dump
    (tmp_path / "wikitext").mkdir()
    (tmp_path / "stackexchange").mkdir()
    (tmp_path / "wikitext" / "wiki.valid.raw").write_text((shared_data / "wikitext" / "wiki.valid.raw").read_text()[:200_000])
    src = shared_data / "stackexchange" / "beer.stackexchange.com.Posts.xml"
    (tmp_path / "stackexchange" / src.name).write_bytes(src.read_bytes())
    corpus = build_corpus("mix", encode, context_length=64, n_windows=40, data_dir=tmp_path)
    assert corpus.tokens_by_source["general"] == corpus.tokens_by_source["stackexchange"] == 40 * 64 // 2
    assert corpus.windows.shape == (40, 64)
    # windows alternate: even ones general text, odd ones StackExchange exchanges
    decode = tiny_llama.tokenizer.decode
    odd = "".join(decode(w.tolist()) for w in corpus.windows[1::2])
    even = "".join(decode(w.tolist()) for w in corpus.windows[::2])
    assert odd.count("Assistant:") >= 1 and "Assistant:" not in even
