"""torch implementation of the framework-neutral ``audit_sdk.training.Trainer``, vectorised.

``TorchTrainer.fit_many`` trains many small models at once as one ensemble: their parameters are
stacked (``torch.func.stack_module_state``), one forward pass runs every model on its own batch
(``torch.func.vmap`` over ``functional_call``), and one optimizer step updates them all. Adam and
SGD act elementwise, so each model follows the update it would get alone; only the per-model
batches (each model shuffles its own data every epoch) differ from a one-by-one run by their
random order. Models torch.func cannot vectorise (e.g. BatchNorm in training mode) fall back to
the one-by-one torch ``Trainer`` with a note.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from audit_sdk.errors import InvalidParameterError
from audit_sdk.target import softmax

from ._util import resolve_device
from .contract import TorchContract
from .training import TrainConfig, Trainer

__all__ = ["StackedForward", "TorchTrainer", "model_identity"]

#: Most models trained in one vectorised group (bounds memory; larger sets run group after group).
MAX_GROUP = 64
#: On CPU: past ~32 small models a group's activations outgrow the cache and each model trains
#: slower (digits CNN, ``benchmarks/mia.py speed``: 64 at once ~10% slower per model than 32).
CPU_GROUP = 32


def model_identity(model: nn.Module) -> str:
    """The architecture as text (module tree and parameter shapes), hashed: part of a cache key."""
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256((repr(model) + repr(shapes)).encode()).hexdigest()[:16]


class TorchTrainer(TorchContract):
    """Trains classifiers built by ``builder(seed) -> nn.Module`` with a TrainConfig recipe.

    Args:
        builder: picklable callable returning a freshly initialised module for a seed.
        name: a short description of the architecture for reports (``cnn``, ``factory:pkg.f``).
        n_classes: output classes.
        train: TrainConfig fields (epochs, batch_size, lr, optimizer, weight_decay, ...).
        vectorise: train ``fit_many`` groups as one vectorised ensemble (falls back when it cannot).
        stacked: run a Sequential ensemble through ``StackedForward`` (grouped convolutions and
            batched matmuls, fast on CPU) rather than ``vmap``; other models always use vmap.
    """

    family = "torch"
    file_suffix = ".pt"

    def __init__(
        self,
        builder: Callable[[int], nn.Module],
        *,
        name: str,
        n_classes: int,
        train: dict[str, Any] | None = None,
        vectorise: bool = True,
        stacked: bool = True,
    ) -> None:
        try:
            self.config = TrainConfig(**{"device": "auto", **(train or {})})
        except Exception as exc:
            raise InvalidParameterError(f"invalid torch training options: {exc}") from None
        self.builder = builder
        self.name = name
        self.n_classes = int(n_classes)
        self.vectorise = vectorise
        self.stacked = stacked
        self.notes: list[str] = []
        self._arch_id: str | None = None

    def identity(self) -> str:
        if self._arch_id is None:
            self._arch_id = model_identity(self.builder(0))
        recipe = self.config.model_dump(exclude={"device", "seed", "threads"})
        return f"torch:{self.name}:{self._arch_id}:{sorted(recipe.items())}"

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "family": "torch",
            "architecture": self.name,
            "epochs": c.epochs,
            "batch_size": c.batch_size,
            "lr": c.lr,
            "optimizer": c.optimizer,
        }

    def with_train(self, **changes: Any) -> TorchTrainer:
        """A copy with some training options changed (e.g. fewer epochs to fit a time budget)."""
        return TorchTrainer(
            self.builder,
            name=self.name,
            n_classes=self.n_classes,
            train={**self.config.model_dump(), **changes},
            vectorise=self.vectorise,
            stacked=self.stacked,
        )

    # ------------------------------------------------------------------ one model
    def build(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = self.builder(seed)
        if not isinstance(model, nn.Module):
            raise InvalidParameterError(f"the model builder returned {type(model).__name__}; it must return a torch.nn.Module.")
        return model

    def fit(self, model: nn.Module, x: np.ndarray, y: np.ndarray, *, seed: int) -> nn.Module:
        cfg = self.config.model_copy(update={"seed": seed})
        return Trainer(cfg).fit(model, x, y).model.cpu().eval()

    def predict_proba(self, model: nn.Module, x: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        model = model.cpu().eval()
        xa = np.ascontiguousarray(x, dtype=np.float32)
        with torch.no_grad():
            z = [model(torch.from_numpy(xa[j : j + batch_size])).float().numpy() for j in range(0, len(xa), batch_size)]
        return softmax(np.concatenate(z) if z else np.zeros((0, self.n_classes), np.float32))

    def save(self, model: nn.Module, path: str) -> None:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)

    def load(self, path: str, seed: int) -> nn.Module:
        model = self.build(seed)
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        return model.eval()

    # ------------------------------------------------------------------ many models at once
    def fit_many(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], seeds: Sequence[int]) -> list[nn.Module]:
        if not self.vectorise:
            return super().fit_many(xs, ys, seeds)
        # a single model goes the same (vectorised) way too: model i is the same whichever group trains it,
        # up to float rounding (the vectorised kernels' summation order depends on the group's size)
        out: list[nn.Module] = []
        size = CPU_GROUP if resolve_device(self.config.device).type == "cpu" else MAX_GROUP
        for g in range(0, len(seeds), size):
            sl = slice(g, g + size)
            try:
                out += self._fit_group(list(xs[sl]), list(ys[sl]), list(seeds[sl]))
            except (RuntimeError, NotImplementedError) as exc:  # an op vmap cannot batch: train them one by one
                self.notes.append(f"vectorised training failed ({str(exc).splitlines()[0][:120]}); trained one by one")
                out += super().fit_many(xs[sl], ys[sl], seeds[sl])
        return out

    def _fit_group(self, xs: list[np.ndarray], ys: list[np.ndarray], seeds: list[int]) -> list[nn.Module]:
        from torch.func import functional_call, stack_module_state, vmap

        c = self.config
        dev = resolve_device(c.device)
        m = len(seeds)
        models = [self.build(s).to(dev).train() for s in seeds]
        params, buffers = stack_module_state(models)  # type: ignore[arg-type]
        stacked = StackedForward.of(models[0]) if self.stacked else None
        if stacked is not None:
            forward: Callable[..., torch.Tensor] = lambda p, b, xb: stacked(p, xb)  # noqa: E731 (the vmap one's signature)
        else:
            base = self.build(seeds[0]).to("meta")

            def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
                return functional_call(base, (p, b), (xb,))  # type: ignore[no-any-return]

            forward = vmap(one, in_dims=(0, 0, 0), randomness="different")
        sizes = np.array([len(y) for y in ys])
        nmax = int(sizes.max())
        shape = np.asarray(xs[0]).shape[1:]
        xpad = np.zeros((m, nmax, *shape), np.float32)
        ypad = np.zeros((m, nmax), np.int64)
        for i, (x, y) in enumerate(zip(xs, ys)):
            xpad[i, : len(y)] = x
            ypad[i, : len(y)] = y
        x_t = torch.from_numpy(xpad).to(dev)
        y_t = torch.from_numpy(ypad).to(dev)
        n_t = torch.from_numpy(sizes).to(dev)
        leaves = list(params.values())
        opt = _optimizer(leaves, c)
        # each model shuffles with its own generator, so a model sees the same batches whichever group trains it
        gens = [torch.Generator(device="cpu").manual_seed(int(s) % (2**63 - 1)) for s in seeds]
        bs = c.batch_size
        rows = torch.arange(m, device=dev)[:, None]
        pos = torch.arange(nmax, device=dev)[None, :]
        valid_pos = pos < n_t[:, None]
        for _ in range(c.epochs):
            # each model its own permutation of its own rows; padding sorts last and weighs nothing
            keys = torch.stack([torch.rand(nmax, generator=g) for g in gens]).to(dev).masked_fill(~valid_pos, 2.0)
            perm = keys.argsort(dim=1)
            for j in range(0, nmax, bs):
                idx = perm[:, j : j + bs]
                w = valid_pos[:, j : j + bs].to(torch.float32)
                if not bool(w.any()):
                    break
                xb, yb = x_t[rows, idx], y_t[rows, idx]
                logits = forward(params, buffers, xb)  # (m, b, K)
                ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none").view_as(w)
                # per-model mean over its real rows; summed over models, each model gets its own gradient
                loss = ((ce * w).sum(1) / w.sum(1).clamp(min=1.0)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # a model with no real rows in this batch (smaller data) keeps its parameters and moments
                active = w.sum(1) > 0
                if not bool(active.all()):
                    _freeze_inactive(opt, leaves, active)
                else:
                    opt.step()
        trained = []
        for i, mod in enumerate(models):
            state = {k: v[i].detach().cpu().clone() for k, v in {**params, **buffers}.items()}
            mod = mod.cpu()
            mod.load_state_dict(state)
            trained.append(mod.eval())
        return trained

    def predict_proba_many(self, models: Sequence[nn.Module], x: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        if len(models) == 0:
            return np.zeros((0, len(x), self.n_classes))
        if not self.vectorise or len(models) == 1:
            return super().predict_proba_many(models, x)
        from torch.func import functional_call, stack_module_state, vmap

        xa = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        out = []
        for g in range(0, len(models), MAX_GROUP):
            group = [mod.cpu().eval() for mod in models[g : g + MAX_GROUP]]
            try:
                params, buffers = stack_module_state(group)  # type: ignore[arg-type]
                base = _meta_copy(group[0])

                def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor, _m: nn.Module = base) -> torch.Tensor:
                    return functional_call(_m, (p, b), (xb,))  # type: ignore[no-any-return]

                with torch.no_grad():
                    z = torch.cat(
                        [vmap(one, in_dims=(0, 0, None))(params, buffers, xa[j : j + batch_size]) for j in range(0, len(xa), batch_size)], 1
                    )
                zn = z.float().numpy()
                out.append(softmax(zn.reshape(-1, zn.shape[-1])).reshape(zn.shape))
            except (RuntimeError, NotImplementedError):
                out.append(np.stack([self.predict_proba(mod, x) for mod in group]))
        return np.concatenate(out)

    def time_one(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[nn.Module, float]:
        """Train one model and return it with the seconds it took (to size a budget)."""
        t0 = time.perf_counter()
        model = self.fit(self.build(seed), x, y, seed=seed)
        return model, time.perf_counter() - t0


def _optimizer(leaves: list[torch.Tensor], c: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over the stacked tensors, fused where torch has a fused kernel.

    A fused step updates every tensor in one kernel (the default on CPU is a loop of half a dozen
    elementwise ops per tensor: a visible share of a step of small models); the update is the same
    elementwise rule, up to float rounding.
    """
    kind: Any = torch.optim.Adam if c.optimizer == "adam" else torch.optim.SGD
    opts: dict[str, Any] = {"lr": c.lr, "weight_decay": c.weight_decay}
    if c.optimizer != "adam":
        opts["momentum"] = c.momentum if c.optimizer == "momentum" else 0.0
    try:
        return kind(leaves, fused=True, **opts)  # type: ignore[no-any-return]
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or torch version
        return kind(leaves, **opts)  # type: ignore[no-any-return]


def _meta_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("meta")


def _freeze_inactive(opt: torch.optim.Optimizer, leaves: list[torch.Tensor], active: torch.Tensor) -> None:
    """One optimizer step that leaves the models without rows in this batch exactly as they were."""
    saved = [p.detach()[~active].clone() for p in leaves]
    state = [{k: v[~active].clone() for k, v in opt.state[p].items() if torch.is_tensor(v) and v.dim() > 0} for p in leaves]
    opt.step()
    with torch.no_grad():
        for p, s, st in zip(leaves, saved, state):
            p[~active] = s
            for k, v in st.items():
                opt.state[p][k][~active] = v


# ---------------------------------------------------------------------- the stacked ensemble forward
#: parameterless modules that act on each sample (and, on images, on each channel) independently: run
#: once on the whole ensemble's activations, whatever model a row or channel belongs to
_PER_CHANNEL = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
#: of those, the ones that also act on each element alone (safe on flat features of any shape)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)


def _layers(model: nn.Module) -> list[nn.Module] | None:
    """The model as a flat list of layers when it is a (nested) nn.Sequential without buffers, else None."""
    if not isinstance(model, nn.Sequential) or any(True for _ in model.buffers()):
        return None
    out: list[nn.Module] = []
    for layer in model:
        if isinstance(layer, nn.Sequential):
            inner = _layers(layer)
            if inner is None:
                return None
            out += inner
        elif type(layer) in (nn.Conv2d, nn.Linear, nn.Flatten) or isinstance(layer, _PER_CHANNEL):
            out.append(layer)
        else:
            return None
    return out


class StackedForward:
    """The forward pass of M copies of one nn.Sequential with stacked parameters, without vmap.

    ``torch.func.vmap`` turns a convolution over M models into a grouped convolution on an NCHW
    tensor, and on CPU the max-pooling and elementwise ops around it are slow in that layout (a 2x2
    max-pool over 8x8 planes runs ~10x slower than in channels-last). Here the ensemble's images live
    in one ``(batch, M * channels, H, W)`` tensor (channels-last on CPU), so every Conv2d of the M
    models is one grouped ``conv2d`` (``groups = M * conv.groups``), pooling and activations run once
    on all models' channels, and every Linear is one ``baddbmm`` over the models. A ReLU directly
    followed by a max-pool is applied after the pool (the same values and, up to exact ties,
    gradients: both are monotone) on a quarter of the elements.

    ``StackedForward.of(model)`` is None for what it cannot express (modules other than Conv2d,
    Linear, Flatten and per-channel parameterless layers, buffers such as BatchNorm's, flattening
    of anything but whole samples); the caller then uses vmap.

        fwd = StackedForward.of(model)
        logits = fwd(params, x)  # params: {name: (M, *shape)}, x: (M, batch, *sample_shape) -> (M, batch, classes)
    """

    def __init__(self, layers: list[nn.Module], names: list[str | None]) -> None:
        self.layers = layers
        self.names = names  # the parameter-name prefix of each layer (None: no parameters)

    @classmethod
    def of(cls, model: nn.Module) -> StackedForward | None:
        layers = _layers(model)
        if layers is None:
            return None
        prefix = {id(mod): name for name, mod in model.named_modules()}
        for layer in layers:
            if isinstance(layer, nn.Conv2d) and (layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
                return None
            if isinstance(layer, nn.Flatten) and (layer.start_dim != 1 or layer.end_dim != -1):
                return None
        return cls(layers, [prefix[id(layer)] if isinstance(layer, (nn.Conv2d, nn.Linear)) else None for layer in layers])

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        m, b = x.shape[:2]
        # layout of h: "flat" (M, b, ...), "model" images (M*b, C, H, W) or "group" images (b, M*C, H, W)
        layout = "flat"
        h = x
        layers = self.layers
        i = 0
        while i < len(layers):
            layer, name = layers[i], self.names[i]
            if isinstance(layer, nn.Conv2d):
                w = params[f"{name}.weight"]
                bias = params.get(f"{name}.bias")
                if layout != "group" and h.dim() >= 4 and _im2col_fits(layer, h, m, b):
                    h, layout = _conv_im2col(layer, h.reshape(m, b, *h.shape[-3:]), w, bias), "model"
                else:
                    if layout != "group":
                        h, layout = _to_group(h, m, b), "group"
                    h = nn.functional.conv2d(
                        h, w.reshape(-1, *w.shape[2:]), None if bias is None else bias.reshape(-1),
                        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=m * layer.groups,
                    )  # fmt: skip
            elif isinstance(layer, nn.Linear):
                if layout != "flat":
                    raise NotImplementedError("Linear on images without a Flatten")
                w = params[f"{name}.weight"]
                bias = params.get(f"{name}.bias")
                shape = h.shape
                flat = h.reshape(m, -1, shape[-1])
                if bias is None:
                    h = torch.bmm(flat, w.transpose(1, 2))
                else:
                    h = torch.baddbmm(bias[:, None, :], flat, w.transpose(1, 2))
                h = h.view(*shape[:-1], w.shape[1])
            elif isinstance(layer, nn.Flatten):
                # to (M, b, C*H*W) in torch's C, H, W order
                h = h.reshape(b, m, -1).transpose(0, 1) if layout == "group" else h.reshape(m, b, -1)
                layout = "flat"
            elif type(layer) is nn.ReLU and i + 1 < len(layers) and type(layers[i + 1]) is nn.MaxPool2d and layout != "flat":
                h = layers[i + 1](h).relu()  # pool first: max(relu(x)) == relu(max(x)), on a quarter of the elements
                i += 1
            elif layout != "flat" or isinstance(layer, _ELEMENTWISE):
                h = layer(h)
            else:  # a per-channel layer (pooling) on flat samples: each sample alone
                h = layer(h.reshape(m * b, *h.shape[2:]))
                h = h.view(m, b, *h.shape[1:])
            i += 1
        if layout != "flat":
            raise NotImplementedError("the model ends on images (no Flatten)")
        return h


#: Largest im2col matrix (elements) of a first convolution computed as one batched matmul.
_IM2COL_MAX = 1 << 24


def _im2col_fits(conv: nn.Conv2d, h: torch.Tensor, m: int, b: int) -> bool:
    # with a gradient to the input (a later layer), unfolding's backward costs more than the
    # grouped convolution saves: measured on the digits CNN's second layer
    if conv.groups != 1 or h.requires_grad:
        return False
    c, hh, ww = h.shape[-3:]
    kh, kw = conv.kernel_size
    return m * b * c * kh * kw * hh * ww <= _IM2COL_MAX


def _conv_im2col(conv: nn.Conv2d, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The first convolution of every model as one batched matmul over its unfolded input.

    Grouped convolutions whose groups see one input channel each (the M first layers of a
    one-channel image model) are slow on CPU. The input needs no gradient, so unfolding it (im2col:
    kh*kw strided slices of the padded input written into place, cheaper than ``unfold``'s
    per-image loop) costs one copy and has no backward, and a column of ones carries the bias into
    the same matmul (the layer's output, the largest activation, is written once); the weights'
    gradient is a batched matmul too. Returns ``model`` layout (M*b, O, Ho, Wo), channels-last in
    memory (what the matmul writes).
    """
    m, b, c, hh, ww = x.shape
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = (int(v) for v in conv.padding)  # ints: StackedForward.of declines string padding
    ho = (hh + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (ww + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    k = c * kh * kw
    with torch.no_grad():
        xp = nn.functional.pad(x.reshape(m * b, c, hh, ww), (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # (N, H', W', C)
        cols = x.new_empty(m * b, ho, wo, k + (bias is not None))
        taps = cols[..., :k].view(m * b, ho, wo, c, kh * kw)  # columns in the weight's (C, kh, kw) order
        for i in range(kh):
            for j in range(kw):
                taps[..., i * kw + j] = xp[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
        if bias is not None:
            cols[..., k] = 1.0
    wt = w.reshape(m, w.shape[1], k)
    if bias is not None:
        wt = torch.cat([wt, bias[:, :, None]], dim=2)
    out = torch.bmm(cols.view(m, b * ho * wo, -1), wt.transpose(1, 2))  # (M, b*Ho*Wo, O)
    return out.view(m * b, ho, wo, -1).permute(0, 3, 1, 2)


def _to_group(h: torch.Tensor, m: int, b: int) -> torch.Tensor:
    """Images of the M models as one (b, M*C, H, W) tensor (model i owns channels i*C .. i*C+C-1),
    channels-last on CPU, where max-pooling and elementwise ops over small planes are much faster."""
    if h.dim() == 5:  # flat (M, b, C, H, W)
        h = h.reshape(m * b, *h.shape[2:])
    c, hh, ww = h.shape[1:]
    if h.device.type != "cpu":
        return h.view(m, b, c, hh, ww).transpose(0, 1).reshape(b, m * c, hh, ww)
    g = h.view(m, b, c, hh, ww).permute(1, 3, 4, 0, 2).reshape(b, hh, ww, m * c)
    return g.permute(0, 3, 1, 2)
