"""Tokenizers (plugins), the embedded corpus and JSONL loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit_sdk import InvalidDataError, InvalidParameterError
from audit_sdk.plugins.lm.text import ByteTokenizer, get_tokenizer, load_jsonl, stdlib_corpus
from audit_sdk.sequence import sequence_lengths


class WordTokenizer:
    """A toy third-party tokenizer: one id per lower-case letter, 0 for anything else."""

    vocab_size = 27

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 96 if "a" <= c <= "z" else 0 for c in text.lower()]

    def decode(self, ids):
        return "".join(chr(i + 96) if i else " " for i in ids)


def test_byte_tokenizer_round_trip_and_named_lookup():
    tok = get_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer) and tok.decode(tok.encode("héllo")) == "héllo"
    assert isinstance(get_tokenizer(f"{__name__}:WordTokenizer"), WordTokenizer)
    with pytest.raises(InvalidParameterError, match="unknown tokenizer 'nope'"):
        get_tokenizer("nope")


def test_stdlib_corpus_is_distinct_fixed_length_ascii():
    ch = stdlib_corpus(length=40, max_chunks=500)
    assert len(ch) == 500 and len(set(ch)) == 500
    assert all(len(c) == 40 and c.isascii() for c in ch)
    assert ch == stdlib_corpus(length=40, max_chunks=500)  # seeded


def test_load_jsonl(tmp_path):
    p = tmp_path / "t.jsonl"
    rows = [{"text": "alpha beta", "split": "members"}, {"text": "gamma", "member": False}, {"text": "delta x", "split": "population"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    d = load_jsonl(p, tokenizer=f"{__name__}:WordTokenizer")
    assert sequence_lengths(d.members.x).tolist() == [10] and sequence_lengths(d.non_members.x).tolist() == [5]
    assert d.population is not None and np.array_equal(d.members.x[0, :5], [1, 12, 16, 8, 1])
    p.write_text('{"text": "a", "split": "members"}\n{"text": 3}\n')
    with pytest.raises(InvalidDataError, match=":2: expected"):
        load_jsonl(p)
