"""Causal language models in torch: a tiny GPT, its Target, a Trainer that runs defenses, ONNX export.

    from audit_sdk.adapters.torch.lm import TinyGPT, LMTrainer, TorchLMTarget, export_lm_onnx
    model = TinyGPT(vocab_size=256, d_model=64, n_layers=2)
    result = LMTrainer({"epochs": 30, "batch_size": 16, "lr": 3e-3}, defenses=[dp]).fit(model, ids)
    export_lm_onnx(result.model, "lm.onnx")

Token arrays follow ``audit_sdk.sequence``: int64 ``(n, T)`` right-padded with ``PAD`` (-1).

The GPT's attention is written with explicit ``nn.Linear`` q/k/v/o projections, its positions
with an ``nn.Embedding`` looked up per sample, and it has no weight tying: every parameterised
module is a Linear, Embedding or LayerNorm called once per forward pass, which is what
``defense.dp-sgd``'s ghost clipping handles without per-sample gradients (and Opacus too).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError
from audit_sdk.fileio import atomic_path
from audit_sdk.interfaces import Defense
from audit_sdk.rng import RNGLike, as_generator
from audit_sdk.sequence import PAD, SequenceTarget, sequence_lengths, to_token_array

from ._util import resolve_device
from .training import TrainConfig, TrainResult, _threads, run_training, start_training

__all__ = ["LMTrainer", "TinyGPT", "TorchLMTarget", "export_lm_onnx", "lm_loss"]


class _Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise InvalidParameterError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads}).")
        self.h = n_heads
        self.scale = 1.0 / math.sqrt(d_model // n_heads)  # a constant, not traced from the input's shape
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)
        self.register_buffer("causal", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        dh = d // self.h

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.h, dh).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        att = (q @ k.transpose(-1, -2)) * self.scale
        causal: torch.Tensor = self.causal  # type: ignore[assignment]  # a registered buffer
        att = att.masked_fill(~causal[:t, :t], float("-inf")).softmax(-1)
        return self.o((att @ v).transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = _Attention(d_model, n_heads, max_len)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyGPT(nn.Module):
    """A small GPT-style causal LM: ids ``(b, t)`` -> logits ``(b, t, vocab_size)``.

    model = TinyGPT(vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_len=128)
    """

    #: marks the module as a causal LM for ``audit_sdk.load_target``
    is_causal_lm = True

    def __init__(self, vocab_size: int = 256, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, max_len: int = 128) -> None:
        super().__init__()
        self.config = {"vocab_size": vocab_size, "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "max_len": max_len}
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([_Block(d_model, n_heads, max_len) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        b, t = ids.shape
        # positions looked up per sample (b, t): the embedding's output then carries each sample's
        # own gradient, which per-sample clipping needs
        pos = torch.arange(t, device=ids.device).unsqueeze(0).expand(b, t).contiguous()
        x = self.tok(ids) + self.pos(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean next-token cross-entropy ``(b,)``; targets ``-100`` are ignored."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none", ignore_index=-100)
    valid = (targets != -100).to(ce.dtype)
    return (ce.reshape(targets.shape) * valid).sum(1) / valid.sum(1).clamp(min=1.0)


def _inputs_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs (PAD -> 0, last position dropped) and next-token targets (PAD -> -100)."""
    inp = ids[:, :-1].clamp(min=0)
    tgt = ids[:, 1:].masked_fill(ids[:, 1:] == PAD, -100)
    return inp, tgt


class LMTrainer:
    """Train a causal LM on token sequences with defenses and observer hooks, like the classifier Trainer.

    Same ``TrainConfig``, ``TrainResult`` and training loop (``run_training``); defenses get the
    same ``TrainContext``, whose batch is ``(input ids, next-token targets)`` and whose ``loss_fn``
    is :func:`lm_loss` (one loss per sequence), so ``defense.dp-sgd`` clips per sequence. Each
    batch is trimmed to its longest sequence.

    Args:
        config: a TrainConfig or a mapping of its fields.
        defenses: Defense instances (training-time points: gradient, parameters).
        pm: a plugin manager whose ``on_train_step`` / ``on_epoch_end`` hooks observe training.
    """

    def __init__(self, config: TrainConfig | dict[str, Any] | None = None, *, defenses: Sequence[Defense] = (), pm: Any = None) -> None:
        self.config = TrainConfig.coerce(config)
        self.defenses = list(defenses)
        self.pm = pm
        bad = [d.name for d in self.defenses if "input" in getattr(d, "points", ()) or "output" in getattr(d, "points", ())]
        if bad:
            raise InvalidParameterError(f"LMTrainer runs training-time defenses (gradient, parameters); {bad} act on inputs or outputs.")

    def fit(self, model: nn.Module, x: Any, *, rng: RNGLike = None) -> TrainResult:
        """Train ``model`` in place on PAD-padded token ids ``x`` (n, T) and return a TrainResult."""
        c = self.config
        ids = to_token_array(x, name="training ids")
        lens = sequence_lengths(ids)
        if len(ids) == 0 or lens.max() < 2:
            raise InvalidDataError(f"training ids must hold at least one sequence of 2+ tokens; got shape {ids.shape}.")
        gen_np = as_generator(rng if rng is not None else c.seed)
        with _threads(c.threads):
            ctx = start_training(model, c, loss_fn=lm_loss, n_samples=len(ids), rng=gen_np, pm=self.pm)
            ids_t = torch.from_numpy(ids).to(ctx.device)
            lens_t = torch.from_numpy(lens).to(ctx.device)

            def batch(idx_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                # trimmed to the batch's longest sequence (an empty Poisson batch keeps 2 positions)
                t = int(lens_t[idx_t].max()) if len(idx_t) else 2
                return _inputs_targets(ids_t[idx_t, :t])

            return run_training(ctx, self.defenses, batch)


class TorchLMTarget(SequenceTarget):
    """A torch causal LM (ids ``(b, t)`` -> logits ``(b, t, V)``) as a sequence Target.

    target = TorchLMTarget(model)
    loss = target.sequence_loss(data.members.x)
    """

    def __init__(self, model: nn.Module, *, batch_size: int = 64, device: Any = "auto", vocab_size: int | None = None) -> None:
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        cfg = getattr(model, "config", None)  # TinyGPT's dict, or a Hugging Face PretrainedConfig
        self.vocab_size = int(vocab_size or getattr(model, "vocab_size", 0) or getattr(cfg, "vocab_size", 0) or 0)
        self.max_length = (
            getattr(model, "max_len", None) or getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        )
        import inspect

        self._takes_mask = "attention_mask" in inspect.signature(model.forward).parameters

    def _model_version(self) -> Any:
        # in-place updates (training on) bump each parameter's version counter: cached answers then expire
        return tuple(p._version for p in self.model.parameters())

    @torch.no_grad()
    def _next_token_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.model.eval()
        ids_t = torch.from_numpy(np.ascontiguousarray(ids)).to(self.device)
        if self._takes_mask:
            out = self.model(ids_t, attention_mask=torch.from_numpy(np.ascontiguousarray(mask)).to(self.device))
        else:
            out = self.model(ids_t)
        out = getattr(out, "logits", out)  # Hugging Face models return an output object
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"device": str(self.device), "n_params": int(sum(p.numel() for p in self.model.parameters()))}


def export_lm_onnx(model: nn.Module, path: str | Path, *, opset: int = 17, example_length: int = 16, check: bool = True) -> Path:
    """Write a causal LM as ONNX: input ``input_ids`` (batch, time) int64 -> ``logits`` (batch, time, vocab), both axes dynamic.

    Written atomically; ``check`` compares onnxruntime with torch on two batch shapes.

    Raises:
        InvalidModelError: the export fails or disagrees with torch.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    vocab = int(getattr(model, "vocab_size", 2))
    g = torch.Generator().manual_seed(0)
    ex = torch.randint(0, vocab, (2, example_length), generator=g)
    try:
        with atomic_path(p, suffix=".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice is not the user's concern
            torch.onnx.export(
                model,
                (ex,),
                str(tmp),
                input_names=["input_ids"],
                output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:  # the temporary file is gone (atomic_path); nothing half-written is left
        raise InvalidModelError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {exc}") from exc
    if check:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for xs in (ex, torch.randint(0, vocab, (3, max(2, example_length // 2 + 1)), generator=g)):
            with torch.no_grad():
                ref = model(xs).numpy()
            got = sess.run(None, {"input_ids": xs.numpy()})[0]
            if got.shape != ref.shape or not np.allclose(got, ref, atol=1e-4, rtol=1e-3):
                raise InvalidModelError(f"ONNX export of {type(model).__name__} disagrees with torch on ids of shape {tuple(xs.shape)}.")
    return p
