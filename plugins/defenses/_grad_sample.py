"""Per-sample gradient norms and clipped gradient sums for DP-SGD (torch imported by the caller).

Two engines, one result (``ClippedSum``):

``ghost`` (book-keeping, Bu et al. 2023, "Differentially private optimization on large model at
small cost", with the ghost norm of Goodfellow 2015 / Li et al. 2022): one forward pass records
each layer's input ``a``; one ``autograd.grad`` call returns the gradient ``g`` of the summed loss
with respect to each layer's output (parameter gradients are never formed). A sample's weight
gradient of a linear map is sum_t g_t a_t^T, so its squared norm is either
``sum_{t,t'} (a_t.a_t')(g_t.g_t')`` (ghost: never forms the gradient) or the norm of the formed
``g^T a`` of that one layer, whichever costs fewer flops (convolutions use their unfolded input;
large spatial maps favour the direct form, long sequences of small layers the ghost form; the
direct form runs over chunks of samples to bound memory). The clipped sum
``sum_i c_i g_i^T a_i`` is then one matmul per layer (``conv2d_weight`` for convolutions) on the
stored tensors with ``g`` scaled by the clip factors: no second backward pass. Where a convolution's
per-sample gradients were formed for the norms (and fit a shared memory budget), the clipped sum is
instead ``c @ grads``, saving that layer's weight-gradient convolution.

``vmap``: ``torch.func.vmap(grad(...))`` over chunks of samples, materialising per-sample
gradients; used for layers the ghost engine does not know (any module owning trainable
parameters other than Linear, Conv1d/2d without groups, LayerNorm, GroupNorm, Embedding) or on request.

Embeddings: a sample's weight gradient has one row per distinct id it uses, the sum of the output
gradients at that id's positions. The rows of every sample come from one ``index_add`` keyed by
(sample, id) after ``torch.unique``, so the norms and the clipped sum cost O(n T d), never the
(n, vocab, d) per-sample gradients. Transformers qualify when attention is written with Linear
projections (q, k, v, o) and positions are an Embedding looked up per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn import grad as nn_grad

__all__ = ["ClippedSum", "clipped_grad_sum", "ghost_supported", "unsupported_modules"]

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.GroupNorm, nn.Embedding)
#: elements of one chunk of per-sample gradients or unfolded inputs (~64 MiB in float32)
_CHUNK_ELEMS = 1 << 24
#: per-sample gradients kept across layers of one step to form the clipped sum directly (~128 MiB)
_KEEP_ELEMS = 1 << 25
#: samples per grouped weight-gradient convolution: oneDNN's kernels are several times faster for
#: a few groups than for one group per sample of a whole batch
_GROUPED_SAMPLES = 8


@dataclass
class ClippedSum:
    """sum_i clip_i(grad_i) per parameter, with the per-sample norms before clipping."""

    grads: list[torch.Tensor]
    norms: torch.Tensor  # (n,) flat per-sample norms before clipping
    loss: float  # mean per-example loss of the batch (0.0 for an empty batch)


def _own_trainable(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters(recurse=False) if p.requires_grad]


def unsupported_modules(model: nn.Module) -> list[str]:
    """Modules owning trainable parameters that the ghost engine cannot handle."""
    bad = []
    for name, m in model.named_modules():
        if not _own_trainable(m):
            continue
        if not isinstance(m, _SUPPORTED) or (
            isinstance(m, (nn.Conv1d, nn.Conv2d)) and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str))
        ):
            bad.append(f"{name or '<root>'} ({type(m).__name__})")
    return bad


def ghost_supported(model: nn.Module) -> bool:
    return not unsupported_modules(model)


def _chunks(n: int, per_sample: int) -> list[tuple[int, int]]:
    size = max(1, min(n, _CHUNK_ELEMS // max(1, per_sample)))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


class _Layer:
    """One parameterised module's captured input / output during the forward pass."""

    def __init__(self, module: nn.Module) -> None:
        self.module: Any = module  # typed loosely: torch's Module attribute types are Tensor | Module
        self.inp: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        self.calls = 0
        #: Gram matrices of inputs, shared by the layers of one step (set by the ghost engine)
        self.gram_cache: dict[Any, torch.Tensor] | None = None

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        self.calls += 1
        self.inp = inputs[0].detach()
        self.out = output

    # -- per-sample squared norms of this layer's parameters, and the clipped sum -------------
    def params(self) -> list[nn.Parameter]:
        return _own_trainable(self.module)

    def sq_norms(self, g: torch.Tensor, budget: list[int]) -> tuple[torch.Tensor, Any]:
        """(n,) squared per-sample norm of all own trainable params; plus state for ``weighted``."""
        m = self.module
        a = self.inp
        assert a is not None
        n = a.shape[0]
        if isinstance(m, nn.Linear):
            a3 = a.reshape(n, -1, a.shape[-1])
            g3 = g.reshape(n, -1, g.shape[-1])
            return self._linear_like(m, a3, g3), None
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return self._conv_sq(m, a, g, budget)
        if isinstance(m, nn.Embedding):
            return self._embedding_sq(m, a, g)
        # LayerNorm / GroupNorm: per-sample grads are small (channels); form them
        xhat = self._normalised(m, a)
        gw = g * xhat
        per: list[torch.Tensor] = []
        if isinstance(m, nn.LayerNorm):
            red = tuple(range(1, g.dim() - len(m.normalized_shape)))
            if m.weight is not None and m.weight.requires_grad:
                per.append(gw.sum(dim=red) if red else gw)
            if m.bias is not None and m.bias.requires_grad:
                per.append(g.sum(dim=red) if red else g)
        else:
            red = tuple(range(2, g.dim()))
            if m.weight is not None and m.weight.requires_grad:
                per.append(gw.sum(dim=red) if red else gw)
            if m.bias is not None and m.bias.requires_grad:
                per.append(g.sum(dim=red) if red else g)
        sq = torch.stack([p.reshape(n, -1).pow(2).sum(1) for p in per]).sum(0) if per else torch.zeros(n, dtype=g.dtype, device=g.device)
        return sq, per

    @staticmethod
    def _embedding_sq(m: Any, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Squared per-sample norms of an embedding's weight gradient, and its non-zero rows per (sample, id)."""
        n, V = a.shape[0], int(m.num_embeddings)
        ids = a.reshape(n, -1).long()
        g2 = g.reshape(n, ids.shape[1], -1)
        if m.padding_idx is not None:  # torch gives the padding row no gradient
            g2 = g2 * (ids != m.padding_idx).unsqueeze(-1).to(g2.dtype)
        key = (torch.arange(n, device=ids.device).unsqueeze(1) * V + ids).reshape(-1)
        uniq, inv = torch.unique(key, return_inverse=True)
        rows = torch.zeros(uniq.numel(), g2.shape[-1], dtype=g.dtype, device=g.device).index_add_(0, inv, g2.reshape(-1, g2.shape[-1]))
        sq = torch.zeros(n, dtype=g.dtype, device=g.device).index_add_(0, uniq // V, rows.pow(2).sum(1))
        return sq, (rows, uniq)

    @staticmethod
    def _normalised(m: Any, a: torch.Tensor) -> torch.Tensor:
        if isinstance(m, nn.LayerNorm):
            return F.layer_norm(a, m.normalized_shape, None, None, m.eps)
        return F.group_norm(a, m.num_groups, None, None, m.eps)

    def _linear_like(self, m: nn.Linear, a3: torch.Tensor, g3: torch.Tensor) -> torch.Tensor:
        n, T, din = a3.shape
        dout = g3.shape[-1]
        sq = torch.zeros(n, dtype=g3.dtype, device=g3.device)
        if m.weight.requires_grad:
            if T == 1:
                sq = sq + a3.pow(2).sum((1, 2)) * g3.pow(2).sum((1, 2))
            elif T * T * (din + dout) <= T * din * dout:
                for s, e in _chunks(n, T * T):
                    # the input Gram is shared by layers reading the same tensor (attention's q, k, v)
                    key = (a3.data_ptr(), tuple(a3.shape), tuple(a3.stride()), s, e)
                    aa = self.gram_cache.get(key) if self.gram_cache is not None else None
                    if aa is None:
                        aa = torch.bmm(a3[s:e], a3[s:e].transpose(1, 2))
                        if self.gram_cache is not None:
                            self.gram_cache[key] = aa
                    gg = torch.bmm(g3[s:e], g3[s:e].transpose(1, 2))
                    sq[s:e] += torch.bmm(aa.reshape(e - s, 1, -1), gg.reshape(e - s, -1, 1)).reshape(e - s)
            else:
                for s, e in _chunks(n, din * dout):
                    sq[s:e] += torch.einsum("nto,nti->noi", g3[s:e], a3[s:e]).pow(2).sum((1, 2))
        if m.bias is not None and m.bias.requires_grad:
            sq = sq + g3.sum(1).pow(2).sum(1)
        return sq

    @staticmethod
    def _shifted(m: Any, a: torch.Tensor, out_hw: tuple[int, int]) -> Any:
        """Yield, per kernel offset, the (c, Cin, T) input slice that offset multiplies.

        Equivalent to ``F.unfold`` split by kernel offset, but each slice is a plain strided copy,
        several times faster than im2col on CPU; a loop over the k*k offsets, not over samples.
        """
        if isinstance(m, nn.Conv1d):
            a = a.unsqueeze(2)
            ks, st, pd, dl = (1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0]), (1, m.dilation[0])
        else:
            ks, st, pd, dl = m.kernel_size, m.stride, m.padding, m.dilation
        ho, wo = out_hw
        ap = F.pad(a, (int(pd[1]), int(pd[1]), int(pd[0]), int(pd[0]))) if (pd[0] or pd[1]) else a
        c, cin = a.shape[0], a.shape[1]
        for kh in range(ks[0]):
            for kw in range(ks[1]):
                r0, c0 = kh * dl[0], kw * dl[1]
                sl = ap[:, :, r0 : r0 + st[0] * (ho - 1) + 1 : st[0], c0 : c0 + st[1] * (wo - 1) + 1 : st[1]]
                yield sl.reshape(c, cin, ho * wo)

    def _conv_sq(self, m: Any, a: torch.Tensor, g: torch.Tensor, budget: list[int]) -> tuple[torch.Tensor, Any]:
        """Squared per-sample norms of a convolution's weight (and bias), and the state for ``weighted``.

        The state keeps the per-sample weight gradients ``(n, weight.numel())`` when a route formed
        them anyway and ``budget`` (elements, shared by all layers of a step) allows: the clipped sum
        is then ``c @ grads``, not another weight-gradient convolution.
        """
        n = a.shape[0]
        cout = g.shape[1]
        out_hw = (1, g.shape[2]) if g.dim() == 3 else (g.shape[2], g.shape[3])
        g3 = g.reshape(n, cout, -1)  # (n, Cout, T)
        T = g3.shape[2]
        cin = a.shape[1] // m.groups
        ksz = math.prod(m.kernel_size)
        cin_k = cin * ksz
        sq = torch.zeros(n, dtype=g.dtype, device=g.device)
        kept: list[tuple[int, int, torch.Tensor]] | None = None  # (start, end, (e - s, weight.numel()))
        if m.weight.requires_grad:
            # Route by cost: the Gram route when it does fewer flops (small maps); else form the
            # per-sample gradients, with grouped weight-gradient convolutions over a few samples at
            # a time (fast for wide inputs) or, for few input channels, one grouped forward
            # convolution with the output gradients as kernels.
            route = "gram" if T * T * (cin_k + cout) < T * cin_k * cout else ("grouped" if a.shape[1] >= 16 else "patches")
            per_sample = {"gram": cin_k * T + T * T, "grouped": cout * cin_k, "patches": cin_k * T + cout * cin_k}[route]
            keep = route != "gram" and n * cout * cin_k <= budget[0]
            if keep:
                budget[0] -= n * cout * cin_k
                kept = []
            chunks = (
                [(i, min(n, i + _GROUPED_SAMPLES)) for i in range(0, n, _GROUPED_SAMPLES)] if route == "grouped" else _chunks(n, per_sample)
            )
            for s, e in chunks:
                gc = g3[s:e]
                if route == "grouped":
                    w = self._per_sample_weight_grad(m, a[s:e], g[s:e]).reshape(e - s, -1)
                    sq[s:e] += torch.linalg.vector_norm(w, dim=1).square()
                    if kept is not None:
                        kept.append((s, e, w))
                    continue
                if route == "gram":  # patch Gram times output-gradient Gram: never forms the gradient
                    uu = self._patch_gram(m, a[s:e], out_hw)
                    gg = torch.bmm(gc.transpose(1, 2), gc)
                    sq[s:e] += (uu.reshape(e - s, -1) * gg.reshape(e - s, -1)).sum(1)
                else:  # few input channels: the output gradient as the kernel of a grouped forward convolution
                    w = self._per_sample_weight_grad_fwd(m, a[s:e], g[s:e])  # (Cin, c, Cout, *k)
                    sq[s:e] += torch.linalg.vector_norm(w.transpose(0, 1).reshape(e - s, -1), dim=1).square()
                    if kept is not None:
                        kept.append((s, e, w.reshape(cin, e - s, cout, ksz).permute(1, 2, 0, 3).reshape(e - s, -1)))
        gb: torch.Tensor | None = None
        if m.bias is not None and m.bias.requires_grad:
            gb = g3.sum(2)
            sq = sq + gb.pow(2).sum(1)
        return sq, (kept, gb)

    def _patch_gram(self, m: Any, a: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """(c, T, T) Gram matrices of each sample's input patches.

        Either from the unfolded patches, or from the Gram of the (padded) input pixels summed over
        the kernel offsets (each offset pairs pixel (p + o, p' + o)), whichever costs fewer flops:
        the pixel Gram wins for stride-1 kernels larger than 1x1.
        """
        c, cin = a.shape[0], a.shape[1]
        ho, wo = out_hw
        T = ho * wo
        ks, st, pd, dl = (
            (m.kernel_size, m.stride, m.padding, m.dilation)
            if a.dim() == 4
            else ((1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0]), (1, m.dilation[0]))
        )
        hp = (a.shape[2] if a.dim() == 4 else 1) + 2 * int(pd[0])
        wp = a.shape[-1] + 2 * int(pd[1])
        if (hp * wp) ** 2 >= T * T * ks[0] * ks[1]:
            u = torch.cat(list(self._shifted(m, a, out_hw)), 1)
            return torch.bmm(u.transpose(1, 2), u)
        a4 = a if a.dim() == 4 else a.unsqueeze(2)
        ap = F.pad(a4, (int(pd[1]), int(pd[1]), int(pd[0]), int(pd[0]))) if (pd[0] or pd[1]) else a4
        ap = ap.reshape(c, cin, hp * wp)
        aa = torch.bmm(ap.transpose(1, 2), ap).reshape(c, hp, wp, hp, wp)
        uu = torch.zeros(c, ho, wo, ho, wo, dtype=a.dtype, device=a.device)
        for kh in range(ks[0]):
            for kw in range(ks[1]):
                r0, c0 = kh * dl[0], kw * dl[1]
                rs = slice(r0, r0 + st[0] * (ho - 1) + 1, st[0])
                cs = slice(c0, c0 + st[1] * (wo - 1) + 1, st[1])
                uu += aa[:, rs, cs, rs, cs]
        return uu.reshape(c, T, T)

    @staticmethod
    def _per_sample_weight_grad(m: Any, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(c, Cout, Cin, *k) per-sample weight gradients: samples become groups of one convolution."""
        c, cin = a.shape[0], a.shape[1]
        cout = g.shape[1]
        fn = nn_grad.conv1d_weight if isinstance(m, nn.Conv1d) else nn_grad.conv2d_weight
        a1 = a.reshape(1, c * cin, *a.shape[2:])
        g1 = g.reshape(1, c * cout, *g.shape[2:])
        w = fn(a1, (c * cout, cin, *m.kernel_size), g1, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=c)
        return w.reshape(c, cout, cin, *m.kernel_size)

    @staticmethod
    def _per_sample_weight_grad_fwd(m: Any, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(Cin, c, Cout, *k) per-sample weight gradients as one forward convolution.

        Input channels become the batch and samples the channels; each sample's output gradient is
        the kernel of its group (stride and dilation swap roles). Faster than the grouped
        weight-gradient kernel when the input has few channels.
        """
        c, cin = a.shape[0], a.shape[1]
        cout = g.shape[1]
        if isinstance(m, nn.Conv1d):
            a, g = a.unsqueeze(2), g.unsqueeze(2)
            ks, st, pd, dl = (1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0]), (1, m.dilation[0])
        else:
            ks, st, pd, dl = m.kernel_size, m.stride, m.padding, m.dilation
        ap = F.pad(a, (int(pd[1]), int(pd[1]), int(pd[0]), int(pd[0]))) if (pd[0] or pd[1]) else a
        w = F.conv2d(ap.transpose(0, 1), g.reshape(c * cout, 1, g.shape[2], g.shape[3]), stride=tuple(dl), dilation=tuple(st), groups=c)
        w = w[:, :, : ks[0], : ks[1]].reshape(cin, c, cout, *m.kernel_size)
        return w

    def weighted(self, g: torch.Tensor, c: torch.Tensor, state: Any) -> list[torch.Tensor]:
        """sum_i c_i * grad_i for each own trainable param, in ``params()`` order."""
        m = self.module
        a = self.inp
        assert a is not None
        n = a.shape[0]
        out: list[torch.Tensor] = []
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and state is not None and (state[0] is not None or not m.weight.requires_grad):
            kept, gb = state  # per-sample gradients formed for the norms: the clipped sum is a matrix-vector product
            cc = c.to(g.dtype)
            if m.weight.requires_grad:
                out.append(sum(cc[s:e] @ w for s, e, w in kept).reshape(m.weight.shape))
            if gb is not None:
                out.append(cc @ gb)
            return out
        if isinstance(m, nn.Embedding):
            rows, uniq = state
            V = int(m.num_embeddings)
            scaled = rows * c.to(rows.dtype)[uniq // V].unsqueeze(1)
            return [torch.zeros_like(m.weight).index_add_(0, uniq % V, scaled.to(m.weight.dtype))]
        shape = (n,) + (1,) * (g.dim() - 1)
        gc = g * c.reshape(shape).to(g.dtype)
        if isinstance(m, nn.Linear):
            if m.weight.requires_grad:
                out.append(gc.reshape(-1, gc.shape[-1]).t() @ a.reshape(-1, a.shape[-1]))
            if m.bias is not None and m.bias.requires_grad:
                out.append(gc.reshape(-1, gc.shape[-1]).sum(0))
            return out
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if m.weight.requires_grad:
                fn = nn_grad.conv1d_weight if isinstance(m, nn.Conv1d) else nn_grad.conv2d_weight
                out.append(fn(a, m.weight.shape, gc, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups))
            if m.bias is not None and m.bias.requires_grad:
                out.append(gc.reshape(n, gc.shape[1], -1).sum((0, 2)))
            return out
        cc = c.to(g.dtype)
        return [torch.einsum("n,n...->...", cc, p) for p in state]


def _ghost(model: nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, clip: float, per_layer: bool) -> ClippedSum | None:
    layers: list[_Layer] = []
    handles = []
    for m in model.modules():
        if _own_trainable(m):
            lay = _Layer(m)
            layers.append(lay)
            handles.append(m.register_forward_hook(lay.hook))
    try:
        losses = loss_fn(model(x), y)
    finally:
        for h in handles:
            h.remove()
    used = [lay for lay in layers if lay.calls > 0]
    if any(lay.calls > 1 for lay in used):
        return None  # weight sharing: per-call contributions interact; let vmap handle it
    outs = [lay.out for lay in used if lay.out is not None]
    gs = torch.autograd.grad(losses.sum(), outs, allow_unused=True)
    sqs, states = [], []
    budget = [_KEEP_ELEMS]
    grams: dict[Any, torch.Tensor] = {}
    for lay in used:
        lay.gram_cache = grams
    for lay, g in zip(used, gs):
        if g is None:
            g = torch.zeros_like(lay.out)
        sq, st = lay.sq_norms(g, budget)
        sqs.append(sq)
        states.append((g, st))
    n = x.shape[0]
    sq_mat = torch.stack(sqs, 1) if sqs else torch.zeros(n, 0, device=x.device)
    norms = sq_mat.sum(1).sqrt()
    grads_by_param: dict[int, torch.Tensor] = {}
    for j, (lay, (g, st)) in enumerate(zip(used, states)):
        if per_layer:
            c_l = clip / math.sqrt(max(1, len(used)))
            c = torch.clamp(c_l / (sq_mat[:, j].sqrt() + 1e-12), max=1.0)
        else:
            c = torch.clamp(clip / (norms + 1e-12), max=1.0)
        for p, gp in zip(lay.params(), lay.weighted(g, c.detach(), st)):
            grads_by_param[id(p)] = gp.reshape(p.shape)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [grads_by_param.get(id(p), torch.zeros_like(p)) for p in params]
    return ClippedSum(grads=grads, norms=norms.detach(), loss=float(losses.detach().mean()))


def _vmap(model: nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, clip: float, per_layer: bool) -> ClippedSum:
    from torch.func import functional_call, grad_and_value, vmap

    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0)).sum()

    per_fn = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness="different")
    n = x.shape[0]
    d = sum(p.numel() for p in params.values())
    sums = [torch.zeros_like(params[k]) for k in names]
    norms_all, loss_total = [], 0.0
    for s, e in _chunks(n, d):
        g, lv = per_fn(params, x[s:e], y[s:e])
        sq = torch.stack([g[k].reshape(e - s, -1).pow(2).sum(1) for k in names], 1)
        norms = sq.sum(1).sqrt()
        # per-layer = per module (weight and bias together), as in the ghost engine
        layer_of = [k.rsplit(".", 1)[0] if "." in k else "" for k in names]
        layers = sorted(set(layer_of))
        layer_sq = {lay: sq[:, [j for j, lk in enumerate(layer_of) if lk == lay]].sum(1) for lay in layers}
        for j, k in enumerate(names):
            if per_layer:
                c = torch.clamp(clip / math.sqrt(len(layers)) / (layer_sq[layer_of[j]].sqrt() + 1e-12), max=1.0)
            else:
                c = torch.clamp(clip / (norms + 1e-12), max=1.0)
            sums[j] += torch.einsum("n,n...->...", c, g[k])
        norms_all.append(norms)
        loss_total += float(lv.sum())
    return ClippedSum(grads=sums, norms=torch.cat(norms_all) if norms_all else torch.zeros(0), loss=loss_total / max(1, n))


def clipped_grad_sum(
    model: nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, *, clip: float, per_layer: bool = False, mode: str = "auto"
) -> ClippedSum:
    """Sum of per-sample clipped gradients of ``loss_fn(model(x), y)`` (per-example losses).

    Args:
        clip: the flat clip bound C; with ``per_layer`` each parameterised module gets C / sqrt(L),
            so the total per-sample norm stays <= C.
        mode: ``auto`` (ghost when every parameterised module is supported, else vmap),
            ``ghost`` or ``vmap``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if x.shape[0] == 0:
        return ClippedSum(grads=[torch.zeros_like(p) for p in params], norms=torch.zeros(0, device=x.device), loss=0.0)
    if mode == "ghost" and not ghost_supported(model):
        from audit_sdk.errors import InvalidParameterError

        raise InvalidParameterError(
            f"grad_sample_mode='ghost' does not support {', '.join(unsupported_modules(model))}; "
            "use grad_sample_mode='auto' (falls back to vmap) or 'vmap'."
        )
    if mode in ("auto", "ghost") and ghost_supported(model):
        res = _ghost(model, loss_fn, x, y, clip, per_layer)
        if res is not None:
            return res
    return _vmap(model, loss_fn, x, y, clip, per_layer)
