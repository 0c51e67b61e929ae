"""Report figures as base64 PNGs (matplotlib's object API: no pyplot, no global state, thread-safe)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError

__all__ = ["epsilon_figure", "image_grid", "roc_figure", "tradeoff_figure"]


def _figure(w: float = 5.0, h: float = 4.0) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendUnavailableError('the HTML report needs matplotlib: pip install "audit-sdk[report]"') from exc
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any, extra: Sequence[Any] = ()) -> str:
    buf = io.BytesIO()
    # extra: artists outside the axes (legends beside the plot) the tight box must keep whole
    fig.savefig(buf, format="png", bbox_inches="tight", bbox_extra_artists=list(extra) or None)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray, int]], *, title: str) -> str:
    """ROC curves on log-log axes (low FPR is where membership leakage matters; Carlini et al. 2022).

    Args:
        curves: (label, fpr, tpr, n_non_members) per curve; zero rates are drawn at half a sample.
    """
    fig = _figure()
    ax = fig.add_subplot()
    floor = 1.0
    for i, (label, fpr, tpr, n_neg) in enumerate(curves):
        f0 = 0.5 / max(1, n_neg)
        floor = min(floor, f0)
        # drawn above the axes' spines and unclipped: a perfect attack (AUC 1) runs along the
        # left and top edges and would otherwise hide under them
        ax.step(
            np.clip(fpr, f0, 1.0),
            np.clip(tpr, f0, 1.0),
            where="post",
            label=label,
            zorder=3,
            clip_on=False,
            linewidth=1.6 + 1.4 * (len(curves) - 1 - i) / max(1, len(curves) - 1),  # earlier curves wider: identical ones stay visible
        )
    grid = np.logspace(math.log10(floor), 0, 50)
    ax.plot(grid, grid, linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # a margin beyond [floor, 1] keeps curves on the edges visible
    ax.set_xlim(floor / 1.6, 1.6)
    ax.set_ylim(floor / 1.6, 1.6)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def tradeoff_figure(
    series: dict[str, list[tuple[str, float, float]]], *, xlabel: str, ylabel: str, title: str, diagonal: bool = False
) -> str:
    """Points (one per model) joined per series: colour = series (attack), marker = model.

    Models are told apart by marker shape in a second legend, not by text beside each point:
    several attacks share a model's x (its accuracy), and labels there would pile up.

    Args:
        series: series name -> [(point label, x, y), ...].
        diagonal: draw y = x (e.g. empirical vs theoretical epsilon).
    """
    from matplotlib.lines import Line2D

    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot()
    lo, hi = math.inf, -math.inf
    shapes = "osD^vPX*<>ph"
    models: dict[str, str] = {}
    for name, pts in series.items():
        pts = [p for p in pts if p[1] is not None and p[2] is not None and math.isfinite(p[1]) and math.isfinite(p[2])]
        if not pts:
            continue
        xs = [p[1] for p in pts]
        ys = [p[2] for p in pts]
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        (line,) = ax.plot(xs, ys, linestyle=":", label=name)
        for label, x, y in pts:
            marker = models.setdefault(label, shapes[len(models) % len(shapes)])
            ax.plot([x], [y], marker=marker, color=line.get_color(), linestyle="none", markersize=6, zorder=3)
    if diagonal and math.isfinite(lo):
        ax.plot([0, hi], [0, hi], linestyle="--", color="grey", linewidth=1, label="y = x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.25)
    legends = []
    if series:
        first = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="attack", title_fontsize=7)
        ax.add_artist(first)
        handles = [Line2D([], [], marker=m, color="#444", linestyle="none", label=lab) for lab, m in models.items()]
        second = ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(1.02, 0.0), title="model", title_fontsize=7)
        legends = [first, second]
    return _png(fig, legends)


def epsilon_figure(rows: Sequence[tuple[str, float | None, float]]) -> str:
    """Bars of the accountant's epsilon beside the empirical lower bound, per model.

    Args:
        rows: (model label, theoretical epsilon or None, best empirical lower bound).
    """
    fig = _figure(max(4.0, 1.2 * len(rows) + 2), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    theo = [r[1] if r[1] is not None and math.isfinite(r[1]) else 0.0 for r in rows]
    emp = [r[2] for r in rows]
    ax.bar(x - 0.2, theo, width=0.4, label="claimed epsilon (upper bound)")
    ax.bar(x + 0.2, emp, width=0.4, label="empirical lower bound")
    for i, r in enumerate(rows):
        if r[1] is None or not math.isfinite(r[1]):
            ax.annotate("no DP", (x[i] - 0.2, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    import textwrap

    # long labels ("model: audit.dp's run") wrap instead of running into their neighbours
    ax.set_xticks(x, ["\n".join(textwrap.wrap(r[0], 16)) or "?" for r in rows], rotation=0, ha="center", fontsize=7)
    ax.set_ylabel("epsilon")
    if max([*theo, *emp, 0.0]) > 50:  # a huge accountant epsilon would flatten the lower bounds
        ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8)
    return _png(fig)


def _as_images(a: np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, H, W, 3) for imshow, from NCHW, NHW, NHWC or flat square vectors."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        if a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
            a = np.moveaxis(a, 1, -1)
        if a.shape[-1] == 1:
            a = a[..., 0]
        return a
    if a.ndim == 3:
        return a
    if a.ndim == 2:
        side = int(round(math.sqrt(a.shape[1])))
        if side * side == a.shape[1]:
            return a.reshape(len(a), side, side)
        return a[:, None, :]  # one pixel row per sample
    return a.reshape(len(a), 1, -1)


def image_grid(originals: Any, reconstructions: Any, *, data_range: float | None = None, n: int = 8, title: str = "") -> str:
    """Originals (top row) above their reconstructions (bottom row), first ``n`` pairs."""
    orig = _as_images(originals)[:n]
    rec = _as_images(reconstructions)[:n]
    k = min(len(orig), len(rec))
    fig = _figure(1.1 * max(k, 1) + 0.6, 2.6)
    lo = float(min(orig.min(), 0.0)) if k else 0.0
    hi = lo + data_range if data_range else (float(max(orig.max(), rec.max())) if k else 1.0)
    for i in range(k):
        for row, imgs in enumerate((orig, rec)):
            ax = fig.add_subplot(2, k, row * k + i + 1)
            img = np.clip(imgs[i], lo, hi)
            if img.ndim == 3:
                ax.imshow((img - lo) / max(hi - lo, 1e-12))
            else:
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel("original" if row == 0 else "reconstructed", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _png(fig)
