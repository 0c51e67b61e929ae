"""Morphed Learning (MoLe; Wang et al., AAAI 2019): data morphing plus the augmented conv layer.

The data provider keeps a secret invertible morphing matrix and shares only morphed data
``t = M d``, where ``d`` is one channel of a sample flattened (H*W values, or the D features of a
flat sample) and ``M`` is block-diagonal: the same random ``block_size x block_size`` core on each
block (one core per channel with ``per_channel=True``). The developer gets the *augmented*
first layer instead of ``M``: the model's first convolution (or leading linear layer) ``C`` with
``M^-1`` folded in, ``Aug(t) = C(M^-1 t)``, a single dense layer from which neither factor can be
read off. A network whose first layer is replaced by ``Aug`` computes on morphed data exactly
what the original computes on the original data.

    mole = MorphedLearning(block_size=16, seed=None)        # seed None: cryptographically seeded key
    t_train, y = mole.transform_data(x_train, y_train)       # fixes the key on first use
    aug_model = mole.augment(trained_model)                  # deploy: same predictions on morphed data
    # or train from scratch on morphed data (the Trainer folds the layer in on_train_begin):
    Trainer(cfg, defenses=[mole]).fit(model, x_train, y_train)

Security assessment (the paper's reverse-engineering attacker): ``reverse_engineering_curve``
estimates ``M^-1`` by least squares from n (original, morphed) pairs and reports reconstruction
error (MSE, SSIM, PSNR, relative L2 from ``audit_sdk.metrics``) of held-out samples against n.
Overhead: ``overhead(model)`` counts multiply-accumulates of the original and augmented network.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import hookimpl
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError, NotFittedError
from audit_sdk.interfaces import Defense
from audit_sdk.metrics import relative_l2, ssim
from audit_sdk.rng import RNGLike, as_generator, secure_generator
from audit_sdk.target import Target

__all__ = ["MorphedLearning", "MorphedTarget", "count_macs", "reverse_engineering_curve"]  # and AugmentedLayer, resolved lazily (PEP 562)


def _random_core(gen: np.random.Generator, k: int, kind: str, max_condition: float) -> np.ndarray:
    if kind == "orthogonal":
        # Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the sign fix of Mezzadri 2007)
        q, r = np.linalg.qr(gen.standard_normal((k, k)))
        return q * np.sign(np.diag(r))[None, :]
    for _ in range(100):
        m = gen.standard_normal((k, k)) / np.sqrt(k)
        if np.linalg.cond(m) <= max_condition:
            return m
    raise InvalidParameterError(
        f"could not draw a {k}x{k} Gaussian core with condition number <= {max_condition} in 100 tries; "
        "raise max_condition, lower block_size or use matrix='orthogonal'."
    )


class MorphedLearning(Defense):
    """Data morphing with a secret block-diagonal matrix, and the augmented first layer.

    Learned state (after the first ``transform_data`` or ``fit``): ``feature_shape_``,
    ``cores_`` (n_cores, k, k) and ``inverse_cores_``.
    """

    name = "defense.morphing"
    summary = "Morphed Learning: secret invertible input morphing plus the augmented first layer (Wang et al. 2019)."
    #: ``output``: ``wrap_target`` serves the provider's pipeline (morph each query, then the
    #: augmented model), so a model trained on morphed data is audited with the original records.
    points = ("input", "output")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        block_size: int | None = Field(None, ge=1, description="morphing core size; must divide H*W (or D); default: one whole channel")
        per_channel: bool = Field(False, description="a separate core per channel (default: one core shared by every block and channel)")
        matrix: Literal["orthogonal", "gaussian"] = Field("orthogonal", description="distribution of the random core")
        max_condition: float = Field(1e3, gt=1.0, description="largest condition number accepted for a Gaussian core")
        aug_layer: Literal["trainable", "frozen"] = Field(
            "trainable", description="when training on morphed data: train the augmented layer, or keep it fixed as in the paper"
        )
        seed: int | None = Field(None, ge=0, description="key seed; None: drawn from the OS's cryptographic source")

    params: Params

    # ------------------------------------------------------------------ key
    def fit(self, feature_shape: Sequence[int]) -> MorphedLearning:
        """Draw the secret key for samples of ``feature_shape`` ((C, H, W) or (D,)); returns self."""
        shape = tuple(int(s) for s in feature_shape)
        if len(shape) not in (1, 2, 3) or min(shape) < 1:
            raise InvalidDataError(f"{self.name}: samples must be (D,), (H, W) or (C, H, W); got per-sample shape {shape}.")
        channels = shape[0] if len(shape) == 3 else 1
        per = int(np.prod(shape)) // channels
        k = int(self.params.block_size or per)
        if per % k:
            divisors = [d for d in range(1, per + 1) if per % d == 0]
            raise InvalidParameterError(f"{self.name}: block_size={k} must divide the {per} values per channel; choose one of {divisors}.")
        gen = secure_generator() if self.params.seed is None else as_generator(self.params.seed)
        n_cores = channels if self.params.per_channel else 1
        cores = np.stack([_random_core(gen, k, self.params.matrix, self.params.max_condition) for _ in range(n_cores)])
        self.feature_shape_ = shape
        self.channels_, self.per_channel_values_, self.block_size_ = channels, per, k
        self.cores_ = cores
        self.inverse_cores_ = np.transpose(cores, (0, 2, 1)).copy() if self.params.matrix == "orthogonal" else np.linalg.inv(cores)
        return self

    def _check(self, x: Any) -> np.ndarray:
        if not hasattr(self, "cores_"):
            raise NotFittedError(f"{self.name} has no key yet; call fit(feature_shape) or transform_data(x, y) first.")
        a = np.asarray(x)
        if a.ndim < 1 or tuple(a.shape[1:]) != self.feature_shape_:
            raise InvalidDataError(f"{self.name}: the key is for samples of shape {self.feature_shape_}; got {a.shape[1:]}.")
        if a.dtype.kind not in "biuf":
            raise InvalidDataError(f"{self.name}: inputs must be numeric; got {a.dtype}.")
        return a

    def _apply(self, x: np.ndarray, cores: np.ndarray) -> np.ndarray:
        n, c, q, k = len(x), self.channels_, self.per_channel_values_ // self.block_size_, self.block_size_
        blocks = x.reshape(n, c, q, k).astype(np.float64)
        if len(cores) == 1:
            out = np.einsum("ncqj,ij->ncqi", blocks, cores[0])
        else:
            out = np.einsum("ncqj,cij->ncqi", blocks, cores)
        return out.reshape((n, *self.feature_shape_))

    def morph(self, x: Any, *, dtype: Any = None) -> np.ndarray:
        """Morph a batch (n, *feature_shape). Returns float64 unless ``dtype`` (default: x's float dtype)."""
        a = self._check(x)
        out = self._apply(a, self.cores_)
        target = dtype if dtype is not None else (a.dtype if a.dtype.kind == "f" else np.float32)
        return out.astype(target, copy=False)

    def unmorph(self, t: Any, *, dtype: Any = None) -> np.ndarray:
        """Invert ``morph`` (the data provider's side; needs the key)."""
        a = self._check(t)
        out = self._apply(a, self.inverse_cores_)
        target = dtype if dtype is not None else (a.dtype if a.dtype.kind == "f" else np.float64)
        return out.astype(target, copy=False)

    def transform_data(self, x: Any, y: Any, *, rng: Any = None) -> tuple[Any, Any]:
        """Input point: the morphed training data (the key is drawn on first use; ``rng`` is ignored:
        the key never derives from the training seed)."""
        a = np.asarray(x)
        if not hasattr(self, "cores_"):
            self.fit(a.shape[1:])
        self.data_bytes_ = {
            "original": int(a.nbytes),
            "morphed": int(np.dtype(a.dtype if a.dtype.kind == "f" else np.float32).itemsize * a.size),
        }
        return self.morph(a), y

    def wrap_target(self, target: Target) -> Target:
        """Serve ``target`` (a model trained on this key's morphed data) behind the morphing.

        Queries arrive as original records and are morphed with the key before they reach the
        model: the data provider's pipeline, which is what an attacker holding candidate records
        queries. Do not wrap a model that was not trained (or augmented) with this key.
        """
        if not hasattr(self, "cores_"):
            raise NotFittedError(f"{self.name} has no key yet; train with it (or call fit) before wrapping a target.")
        return MorphedTarget(target, self)

    def morph_audit_data(self, data: AuditData) -> AuditData:
        """The same AuditData with every feature morphed, to audit a model served on morphed data."""

        def m(s: Any) -> tuple[np.ndarray, np.ndarray]:
            return self.morph(s.x), s.y

        pop = m(data.population) if data.population is not None else None
        return AuditData(m(data.members), m(data.non_members), pop, n_classes=data.n_classes, check_disjoint=False)

    # ------------------------------------------------------------------ augmented layer
    @staticmethod
    def _first_layer(model: Any) -> int:
        import torch

        if not isinstance(model, torch.nn.Sequential):
            raise InvalidModelError(
                f"defense.morphing folds the key into the first layer of an nn.Sequential; got {type(model).__name__}. "
                "Wrap the model as nn.Sequential(first_conv_or_linear, rest)."
            )
        for j, mod in enumerate(model):
            if any(True for _ in mod.parameters()):
                if not isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear, _aug_cls())):
                    raise InvalidModelError(
                        f"the first layer with parameters is {type(mod).__name__}; defense.morphing needs a convolution or linear layer there."
                    )
                return j
        raise InvalidModelError("the model has no layer with parameters to fold the morphing into.")

    def augmented_layer(self, model: Any) -> Any:
        """Build ``Aug(t) = prefix(M^-1 t)`` for the model's layers up to its first conv / linear layer."""
        import torch

        if not hasattr(self, "cores_"):
            raise NotFittedError(f"{self.name} has no key yet; call fit(feature_shape) or transform_data(x, y) first.")
        j = self._first_layer(model)
        if isinstance(model[j], _aug_cls()):
            raise InvalidModelError("the model already starts with an augmented layer.")
        prefix = copy.deepcopy(torch.nn.Sequential(*list(model)[: j + 1])).double().cpu().eval()
        d = int(np.prod(self.feature_shape_))
        basis = self.unmorph(np.eye(d).reshape((d, *self.feature_shape_)), dtype=np.float64)
        with torch.no_grad():
            zero = prefix(torch.zeros((1, *self.feature_shape_), dtype=torch.float64))
            cols = prefix(torch.from_numpy(basis)) - zero
            out_shape = tuple(zero.shape[1:])
            weight = cols.reshape(d, -1).T.contiguous()
            bias = zero.reshape(-1)
            layer = _aug_cls()(weight, bias, self.feature_shape_, out_shape)
            # the prefix must be affine for the fold to be exact
            probe = np.random.default_rng(0).standard_normal((3, *self.feature_shape_))
            want = prefix(torch.from_numpy(self.unmorph(probe, dtype=np.float64)))
            got = layer.double()(torch.from_numpy(probe))
            if not torch.allclose(got, want, atol=1e-8, rtol=1e-8):
                raise InvalidModelError(
                    f"the layers before and including {type(model[j]).__name__} are not linear; put the first conv or linear layer first."
                )
        ref = next(model[j].parameters())
        return layer.to(dtype=ref.dtype, device=ref.device)

    def augment(self, model: Any) -> Any:
        """A copy of ``model`` that takes morphed inputs: its first layer replaced by the augmented one."""
        new = copy.deepcopy(model)
        self._fold_in_place(new)
        return new

    def _fold_in_place(self, model: Any) -> Any:
        import torch

        j = self._first_layer(model)
        layer = self.augmented_layer(model)
        for i in range(j):
            model[i] = torch.nn.Identity()
        model[j] = layer
        return layer

    def on_train_begin(self, ctx: Any) -> None:
        model = ctx.model
        j = self._first_layer(model)
        if isinstance(model[j], _aug_cls()):
            self.overhead_ = None
            return
        original = copy.deepcopy(model)
        layer = self._fold_in_place(model)
        if self.params.aug_layer == "frozen":
            layer.requires_grad_(False)
        else:
            ctx.optimizer.add_param_group({"params": list(layer.parameters())})
        self.overhead_ = self.overhead(original)

    def on_train_end(self, ctx: Any) -> dict[str, Any]:
        report: dict[str, Any] = {"block_size": self.block_size_, "key_bytes": int(self.cores_.nbytes)}
        overhead = getattr(self, "overhead_", None)
        if overhead:
            report.update(overhead)
        if getattr(self, "data_bytes_", None):
            report["data_size_overhead"] = self.data_bytes_["morphed"] / max(1, self.data_bytes_["original"]) - 1.0
        if ctx.x_val is not None and ctx.y_val is not None:
            x_val = np.asarray(ctx.x_val)
            report["accuracy"] = ctx.accuracy(x_val, ctx.y_val)
        return report

    # ------------------------------------------------------------------ overhead
    def overhead(self, model: Any) -> dict[str, Any]:
        """Compute and size overhead of serving ``model`` (original, not augmented) on morphed data.

        Returns MACs of the original and augmented networks per sample, their relative difference
        (``compute_overhead``, the paper's computational overhead), the augmented layer's size in
        bytes and the parameter-count ratio.
        """
        aug = self.augment(model)
        m0 = count_macs(model, self.feature_shape_)
        m1 = count_macs(aug, self.feature_shape_)
        p0 = sum(p.numel() for p in model.parameters())
        p1 = sum(p.numel() for p in aug.parameters())
        layer = aug[self._first_layer(aug)]
        return {
            "macs_original": m0,
            "macs_augmented": m1,
            "compute_overhead": m1 / max(1, m0) - 1.0,
            "params_original": int(p0),
            "params_augmented": int(p1),
            "aug_layer_bytes": int(sum(p.numel() * p.element_size() for p in layer.parameters())),
        }


class MorphedTarget(Target):
    """A Target that morphs each query with the key before the wrapped (augmented) model sees it."""

    def __init__(self, inner: Target, defense: MorphedLearning) -> None:
        self.inner, self.defense = inner, defense
        self.input_shape = tuple(defense.feature_shape_)
        if inner.input_shape and any(a is not None and a != b for a, b in zip(inner.input_shape, self.input_shape)):
            raise InvalidModelError(f"the model takes inputs of shape {inner.input_shape} but the key morphs {self.input_shape}.")
        self.input_dtype = inner.input_dtype
        self.n_classes = int(inner.n_classes)
        self.batch_size = int(inner.batch_size)
        self.outputs_logits = inner.outputs_logits
        self.capabilities = frozenset(inner.capabilities) & {"labels", "probabilities", "logits"}

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        return self.inner._batched_raw(self.defense.morph(x, dtype=self.inner.input_dtype))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"defense": self.defense.name, "block_size": self.defense.block_size_, "wraps": self.inner.describe()})
        return d


def _aug_layer_class() -> Any:
    import torch

    class _AugmentedLayer(torch.nn.Module):
        """A dense affine map from flattened morphed inputs to the first layer's output shape."""

        def __init__(self, weight: Any, bias: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
            with torch.no_grad():
                self.linear.weight.copy_(weight)
                self.linear.bias.copy_(bias)
            self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
            self.unflatten = torch.nn.Unflatten(1, self.out_shape)

        def forward(self, x: Any) -> Any:
            return self.unflatten(self.linear(x.flatten(1)))

        def extra_repr(self) -> str:
            return f"in_shape={self.in_shape}, out_shape={self.out_shape}"

    _AugmentedLayer.__name__ = _AugmentedLayer.__qualname__ = "AugmentedLayer"
    return _AugmentedLayer


_AUG_CLASS: list[Any] = []


def _aug_cls() -> Any:
    """The ``AugmentedLayer`` torch Module class, built on first use (no torch import at import time)."""
    if not _AUG_CLASS:
        cls = _aug_layer_class()
        cls.__module__ = __name__
        _AUG_CLASS.append(cls)
    return _AUG_CLASS[0]


def __getattr__(name: str) -> Any:
    # PEP 562: ``from audit_sdk.plugins.defenses.morphing import AugmentedLayer`` imports torch only then
    if name == "AugmentedLayer":
        return _aug_cls()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def count_macs(model: Any, feature_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one sample (conv and linear layers)."""
    import torch

    total = [0]

    def hook(mod: Any, inp: Any, out: Any) -> None:
        if isinstance(mod, torch.nn.Linear):
            total[0] += mod.in_features * mod.out_features * (out.numel() // out.shape[-1])
        elif isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d)):
            kernel = int(np.prod(mod.kernel_size)) * (mod.in_channels // mod.groups)
            total[0] += out.numel() * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        ref = next(model.parameters())
        with torch.no_grad():
            model.eval()(torch.zeros((1, *feature_shape), dtype=ref.dtype, device=ref.device))
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def reverse_engineering_curve(
    defense: MorphedLearning,
    x_known: Any,
    x_eval: Any,
    n_pairs: Sequence[int],
    *,
    knows_blocks: bool = True,
    rng: RNGLike = 0,
) -> list[dict[str, Any]]:
    """The paper's reverse-engineering attacker: learn ``M^-1`` from n (original, morphed) pairs.

    For each n the attacker gets n random samples of ``x_known`` with their morphed versions and
    fits the inverse by least squares (the minimum-norm solution while underdetermined), then
    reconstructs ``x_eval`` from its morphed version. With ``knows_blocks`` the attacker knows the
    block structure and that the core is shared, so every block of every pair is one equation
    system row (the strongest attacker); otherwise it fits a dense D x D inverse.

    Returns:
        one row per n: ``{n_pairs, mse, relative_l2, ssim, psnr}`` (SSIM and PSNR, from the pooled
        MSE, for image data over the data range of ``x_eval``).
    """
    xk = defense._check(x_known).astype(np.float64)
    xe = defense._check(x_eval).astype(np.float64)
    te = defense.morph(xe, dtype=np.float64)
    gen = as_generator(rng)
    k, c = defense.block_size_, defense.channels_
    shared = len(defense.cores_) == 1
    rows = []
    for n in n_pairs:
        if not 1 <= int(n) <= len(xk):
            raise InvalidParameterError(f"n_pairs values must be in [1, {len(xk)}] (the known samples); got {n}.")
        idx = gen.choice(len(xk), size=int(n), replace=False)
        xo, xm = xk[idx], defense.morph(xk[idx], dtype=np.float64)
        if knows_blocks:
            bo = xo.reshape(len(xo), c, -1, k)
            bm = xm.reshape(len(xm), c, -1, k)
            be = te.reshape(len(te), c, -1, k)
            if shared:
                a, *_ = np.linalg.lstsq(bm.reshape(-1, k), bo.reshape(-1, k), rcond=None)
                rec = be @ a
            else:
                rec = np.empty_like(be)
                for ch in range(c):
                    a, *_ = np.linalg.lstsq(bm[:, ch].reshape(-1, k), bo[:, ch].reshape(-1, k), rcond=None)
                    rec[:, ch] = be[:, ch] @ a
        else:
            a, *_ = np.linalg.lstsq(xm.reshape(len(xm), -1), xo.reshape(len(xo), -1), rcond=None)
            rec = te.reshape(len(te), -1) @ a
        rec = rec.reshape(xe.shape)
        row: dict[str, Any] = {
            "n_pairs": int(n),
            "mse": float(np.mean((rec - xe) ** 2)),
            "relative_l2": float(relative_l2(xe.reshape(len(xe), 1, 1, -1), rec.reshape(len(rec), 1, 1, -1)).mean()),
        }
        if xe.ndim >= 3:
            rng_ = float(xe.max() - xe.min()) or 1.0
            row["ssim"] = float(ssim(xe, rec, data_range=rng_).mean())
            # PSNR of the pooled MSE: a per-image mean is dominated by the exactly recovered (infinite) ones
            row["psnr"] = float(10.0 * np.log10(rng_**2 / max(row["mse"], 1e-300)))
        rows.append(row)
    return rows


@hookimpl
def register_defenses() -> list[type[Defense]]:
    return [MorphedLearning]
