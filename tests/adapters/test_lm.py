"""Causal-LM adapters: the torch and ONNX targets agree with torch / onnxruntime run directly; the hook claims only LMs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from audit_sdk import InvalidDataError, InvalidModelError, load_target
from audit_sdk.adapters.onnx_lm import OnnxLMTarget, looks_like_causal_lm
from audit_sdk.adapters.torch.lm import TinyGPT, TorchLMTarget, export_lm_onnx
from audit_sdk.sequence import PAD, pad_sequences


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return TinyGPT(vocab_size=40, d_model=16, n_layers=1, n_heads=2, max_len=24).eval()


@pytest.fixture(scope="module")
def gpt_onnx(gpt, tmp_path_factory):
    return export_lm_onnx(gpt, tmp_path_factory.mktemp("lm") / "lm.onnx")


def _ids(n=9, seed=0, vocab=40, max_len=20):
    rng = np.random.default_rng(seed)
    return pad_sequences([rng.integers(0, vocab, rng.integers(2, max_len)) for _ in range(n)])


def _direct_logp(gpt, x):
    """Per-token log-probabilities straight from torch, one sequence at a time (no padding, no batching)."""
    out = []
    for row in x:
        s = torch.from_numpy(row[row != PAD])
        with torch.no_grad():
            lp = torch.log_softmax(gpt(s[None]).double(), -1)[0]
        out.append(lp[torch.arange(len(s) - 1), s[1:]].numpy())
    return out


def test_torch_and_onnx_targets_match_direct_torch(gpt, gpt_onnx):
    x = _ids()
    ref = _direct_logp(gpt, x)
    for t in (TorchLMTarget(gpt, device="cpu", batch_size=4), OnnxLMTarget(gpt_onnx, batch_size=4, device="cpu")):
        st = t.token_stats(x)
        for i, r in enumerate(ref):
            np.testing.assert_allclose(st.logp[i, : len(r)], r, atol=1e-4)
            assert np.isnan(st.logp[i, len(r) :]).all()
        assert t.vocab_size == 40


def test_load_target_claims_lm_files_and_modules_and_leaves_classifiers(gpt, gpt_onnx, tmp_path):
    from audit_sdk.adapters.torch import export_onnx

    assert type(load_target(str(gpt_onnx))).__name__ == "OnnxLMTarget"
    assert type(load_target(gpt)).__name__ == "TorchLMTarget"
    clf = torch.nn.Sequential(torch.nn.Linear(4, 3))
    p = export_onnx(clf, np.zeros((2, 4), np.float32), tmp_path / "clf.onnx")
    assert not looks_like_causal_lm(p)
    assert type(load_target(str(p))).__name__ == "OnnxTarget"
    assert type(load_target(clf, input_shape=(4,))).__name__ == "TorchTarget"


class _MaskedFixed(torch.nn.Module):
    """Takes an attention mask and zeroes logits where it is 0: a wrong mask on real tokens would show."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids, attention_mask):
        return self.gpt(input_ids) * attention_mask.unsqueeze(-1).float()


def test_fixed_shapes_and_attention_mask(gpt, tmp_path):
    p = tmp_path / "fixed.onnx"
    ex = (torch.zeros(3, 20, dtype=torch.long), torch.ones(3, 20, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer notes
        torch.onnx.export(
            _MaskedFixed(gpt).eval(),
            ex,
            str(p),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
        )
    t = load_target(str(p))
    assert isinstance(t, OnnxLMTarget) and t.max_length == 20 and t.batch_size == 3
    x = _ids(n=7)
    st = t.token_stats(x)
    for i, r in enumerate(_direct_logp(gpt, x)):
        np.testing.assert_allclose(st.logp[i, : len(r)], r, atol=1e-4)
    with pytest.raises(InvalidDataError, match="at most 20"):
        t.token_stats(pad_sequences([np.arange(25) % 40]))


def test_bad_inputs_are_refused(gpt, gpt_onnx):
    t = TorchLMTarget(gpt, device="cpu")
    with pytest.raises(InvalidDataError, match="vocabulary has 40"):
        t.token_stats(np.array([[1, 2, 45]]))
    with pytest.raises(InvalidDataError, match="pad on the right"):
        t.token_stats(np.array([[1, PAD, 3]]))
    with pytest.raises(InvalidModelError, match="does not exist"):
        OnnxLMTarget("nope.onnx")


def test_a_hugging_face_causal_lm_with_causal_lm_true():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=24, n_embd=16, n_layer=1, n_head=2)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    t = load_target(hf, causal_lm=True)
    assert type(t).__name__ == "TorchLMTarget" and t.vocab_size == 40 and t.max_length == 24
    x = _ids(n=5)
    st = t.token_stats(x)
    for i, row in enumerate(x):
        s = torch.from_numpy(row[row != PAD])
        with torch.no_grad():
            lp = torch.log_softmax(hf(s[None]).logits.double(), -1)[0]
        np.testing.assert_allclose(st.logp[i, : len(s) - 1], lp[torch.arange(len(s) - 1), s[1:]].numpy(), atol=1e-4)


def test_cached_answers_expire_when_the_torch_model_changes():
    torch.manual_seed(0)
    m = TinyGPT(vocab_size=40, d_model=16, n_layers=1, n_heads=2, max_len=24)
    t = TorchLMTarget(m, device="cpu")
    x = _ids(n=4)
    first = t.token_stats(x).logp.copy()
    assert t.token_stats(x) is t.token_stats(x)  # cached
    with torch.no_grad():
        m.head.bias += 1.0 * torch.arange(40)  # an in-place change of the served model
    assert not np.allclose(np.nan_to_num(t.token_stats(x).logp), np.nan_to_num(first))


class _Bidirectional(torch.nn.Module):
    """A token classifier shape-alike: every position's logits see the whole sequence."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(40, 8)
        self.out = torch.nn.Linear(8, 5)

    def forward(self, input_ids):
        h = self.emb(input_ids)
        return self.out(h + h.mean(1, keepdim=True))


def test_a_bidirectional_token_model_is_refused(tmp_path):
    p = tmp_path / "ner.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Bidirectional().eval(),
            (torch.zeros(2, 6, dtype=torch.long),),
            str(p),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "b", 1: "t"}, "logits": {0: "b", 1: "t"}},
            opset_version=17,
            dynamo=False,
        )
    with pytest.raises(InvalidModelError, match="not a causal language model"):
        load_target(str(p))
