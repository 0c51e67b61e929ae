"""Audit data: members, non-members and an optional population, validated on construction.

Also the loaders for common formats (``.npz``, MNIST idx, CIFAR binary batches, image folders)
and the embedded default data set (scikit-learn's digits, which ships inside scikit-learn).
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._rng import RNGLike, as_generator
from .errors import BackendUnavailableError, InvalidDataError

__all__ = [
    "AuditData",
    "Split",
    "load_cifar_binary",
    "load_digits_data",
    "load_image_folder",
    "load_mnist_idx",
    "load_npz",
    "make_audit_data",
    "save_npz",
]


@dataclass(frozen=True)
class Split:
    """Features ``x`` (n, ...) and integer labels ``y`` (n,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: Any) -> Split:
        """The sub-split at ``idx`` (indices or a boolean mask)."""
        return Split(self.x[idx], self.y[idx])


def _problems(name: str, x: Any, y: Any) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    probs: list[str] = []
    try:
        xa = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        return [f"{name}: features cannot be read as an array ({exc})"], None, None
    try:
        ya = np.asarray(y)
    except Exception as exc:
        return [f"{name}: labels cannot be read as an array ({exc})"], None, None
    if xa.dtype.kind not in "biuf":
        probs.append(f"{name}: features have dtype {xa.dtype}; expected numeric (convert to float32)")
    if xa.ndim < 2:
        probs.append(f"{name}: features have shape {xa.shape}; expected (n_samples, ...) with at least 2 dimensions")
    if ya.ndim != 1:
        probs.append(f"{name}: labels have shape {ya.shape}; expected 1-D (n_samples,)")
    elif ya.dtype.kind == "f":
        if np.all(np.isfinite(ya)) and np.all(ya == np.round(ya)):
            ya = ya.astype(np.int64)
        else:
            probs.append(f"{name}: labels are non-integer floats; expected class indices 0..K-1")
    elif ya.dtype.kind not in "iu":
        probs.append(f"{name}: labels have dtype {ya.dtype}; expected integers 0..K-1 (encode string labels first)")
    if xa.ndim >= 1 and ya.ndim == 1 and len(xa) != len(ya):
        probs.append(f"{name}: {len(xa)} feature rows but {len(ya)} labels; expected one label per row")
    if xa.ndim >= 1 and len(xa) == 0:
        probs.append(f"{name}: is empty; expected at least one sample")
    if xa.dtype.kind == "f" and xa.size and not np.isfinite(xa).all():
        bad = int((~np.isfinite(xa.reshape(len(xa), -1))).any(axis=1).sum())
        probs.append(f"{name}: {bad} rows contain NaN or inf; drop or impute them")
    if ya.dtype.kind in "iu" and ya.size and ya.min() < 0:
        probs.append(f"{name}: labels contain negative values ({int(ya.min())}); expected 0..K-1")
    return probs, xa, ya


def _row_hashes(x: np.ndarray) -> set[bytes]:
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    return {hashlib.blake2b(row.tobytes(), digest_size=12).digest() for row in flat}


class AuditData:
    """Members, non-members and an optional population (data the attacker may use).

    Validated on construction; every problem is reported at once::

        data = AuditData(members=(x_in, y_in), non_members=(x_out, y_out), population=(x_aux, y_aux))

    Args:
        members: (x, y) the model was trained on.
        non_members: (x, y) it was not trained on, from the same distribution.
        population: optional auxiliary (x, y) for reference/shadow models; disjoint from both.
        n_classes: number of classes; inferred from the labels when omitted.
        check_disjoint: refuse exact duplicate rows shared between members and non-members
            (a duplicate makes membership undefined and silently biases the metrics).

    Raises:
        InvalidDataError: listing every problem found.
    """

    def __init__(
        self,
        members: Split | tuple[Any, Any],
        non_members: Split | tuple[Any, Any],
        population: Split | tuple[Any, Any] | None = None,
        *,
        n_classes: int | None = None,
        check_disjoint: bool = True,
    ) -> None:
        sets = {"members": members, "non_members": non_members}
        if population is not None:
            sets["population"] = population
        problems: list[str] = []
        arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, s in sets.items():
            x, y = (s.x, s.y) if isinstance(s, Split) else s
            p, xa, ya = _problems(name, x, y)
            problems += p
            if xa is not None and ya is not None:
                arrays[name] = (xa, ya)
        shapes = {name: a[0].shape[1:] for name, a in arrays.items() if a[0].ndim >= 2}
        if len(set(shapes.values())) > 1:
            problems.append(
                "feature shapes differ between sets: "
                + ", ".join(f"{k} {v}" for k, v in shapes.items())
                + "; every set must have the same per-sample shape"
            )
        if not problems:
            max_label = max(int(a[1].max()) for a in arrays.values())
            if n_classes is None:
                n_classes = max_label + 1
            elif max_label >= n_classes:
                problems.append(f"labels go up to {max_label} but n_classes={n_classes}; expected labels in 0..{n_classes - 1}")
        # checked even when other problems were found: every problem is reported at once
        mx, nx = (arrays[k][0] if k in arrays else None for k in ("members", "non_members"))
        comparable = mx is not None and nx is not None and mx.ndim >= 2 and mx.shape[1:] == nx.shape[1:] and len(mx) and len(nx)
        if check_disjoint and comparable and mx is not None and nx is not None:
            overlap = _row_hashes(mx) & _row_hashes(nx)
            if overlap:
                problems.append(
                    f"{len(overlap)} feature rows appear in both members and non-members; membership is undefined "
                    "for them. Deduplicate the data, or pass check_disjoint=False to audit anyway"
                )
        if problems:
            raise InvalidDataError("invalid audit data: " + "; ".join(problems) + ".")
        self.members = Split(*arrays["members"])
        self.non_members = Split(*arrays["non_members"])
        self.population = Split(*arrays["population"]) if "population" in arrays else None
        self.n_classes: int = int(n_classes)  # type: ignore[arg-type]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.members.x.shape[1:])

    def combined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Members then non-members as (x, y, is_member)."""
        x = np.concatenate([self.members.x, self.non_members.x])
        y = np.concatenate([self.members.y, self.non_members.y])
        truth = np.concatenate([np.ones(len(self.members), bool), np.zeros(len(self.non_members), bool)])
        return x, y, truth

    def summary(self) -> dict[str, Any]:
        return {
            "members": len(self.members),
            "non_members": len(self.non_members),
            "population": len(self.population) if self.population is not None else 0,
            "feature_shape": list(self.feature_shape),
            "n_classes": self.n_classes,
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"AuditData(members={s['members']}, non_members={s['non_members']}, population={s['population']}, shape={s['feature_shape']})"
        )


# --------------------------------------------------------------------------- loaders
_NPZ_KEYS = ("x_members", "y_members", "x_non_members", "y_non_members")


def load_npz(path: str | Path, *, n_classes: int | None = None, check_disjoint: bool = True) -> AuditData:
    """Load AuditData from an ``.npz`` with keys ``x_members``, ``y_members``, ``x_non_members``,
    ``y_non_members`` and optionally ``x_population``, ``y_population``.

    Never unpickles (``allow_pickle=False``): an untrusted file cannot run code.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"data file {str(p)!r} does not exist; pass the path to an .npz file.")
    if not zipfile.is_zipfile(p):
        raise InvalidDataError(f"{p}: is not a readable .npz file (not a zip archive); write it with numpy.savez.")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        raise InvalidDataError(f"{p}: contains object arrays, which are refused (no pickle loading); save plain numeric arrays.") from exc
    except Exception as exc:
        raise InvalidDataError(f"{p}: is not a readable .npz file ({exc}).") from exc
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise InvalidDataError(
            f"{p}: missing keys {missing}; found {sorted(arrays)}. Expected {list(_NPZ_KEYS)} (+ x_population, y_population)."
        )
    pop = (arrays["x_population"], arrays["y_population"]) if "x_population" in arrays and "y_population" in arrays else None
    return AuditData(
        (arrays["x_members"], arrays["y_members"]),
        (arrays["x_non_members"], arrays["y_non_members"]),
        pop,
        n_classes=n_classes,
        check_disjoint=check_disjoint,
    )


def save_npz(data: AuditData, path: str | Path) -> Path:
    """Write AuditData in the format ``load_npz`` reads."""
    arrays = {
        "x_members": data.members.x,
        "y_members": data.members.y,
        "x_non_members": data.non_members.x,
        "y_non_members": data.non_members.y,
    }
    if data.population is not None:
        arrays["x_population"] = data.population.x
        arrays["y_population"] = data.population.y
    p = Path(path)
    np.savez_compressed(p, **arrays)  # type: ignore[arg-type]
    return p


def _open_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InvalidDataError(f"idx file {str(path)!r} does not exist.")
    buf = _open_maybe_gz(path)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise InvalidDataError(f"{path}: not an idx file (bad magic number {buf[:4]!r}); expected MNIST idx format.")
    ndim = buf[3]
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    offset = 4 + 4 * ndim
    n = int(np.prod(dims)) if dims else 0
    if len(buf) - offset != n * dtype.itemsize:
        raise InvalidDataError(f"{path}: header says {dims} but the file holds {len(buf) - offset} bytes of data; the file is truncated.")
    return np.frombuffer(buf, dtype=dtype, offset=offset).reshape(dims)


def load_mnist_idx(images: str | Path, labels: str | Path, *, normalize: bool = True) -> Split:
    """Load MNIST-style idx files (optionally gzipped) as NCHW float32 in [0, 1] and int64 labels."""
    x = _read_idx(Path(images))
    y = _read_idx(Path(labels))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise InvalidDataError(f"idx images {x.shape} and labels {y.shape} do not match; expected (n, H, W) and (n,).")
    xf = x[:, None].astype(np.float32)
    return Split(xf / 255.0 if normalize else xf, y.astype(np.int64))


def load_cifar_binary(paths: str | Path | Sequence[str | Path], *, cifar100: bool = False, fine_labels: bool = True) -> Split:
    """Load CIFAR-10 (1 label byte) or CIFAR-100 (coarse + fine label bytes) binary batches as NCHW float32 in [0, 1]."""
    path_list = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    nlab = 2 if cifar100 else 1
    rec = nlab + 3 * 32 * 32
    xs, ys = [], []
    for p in path_list:
        if not p.is_file():
            raise InvalidDataError(f"CIFAR batch {str(p)!r} does not exist.")
        raw = np.frombuffer(p.read_bytes(), dtype=np.uint8)
        if raw.size == 0 or raw.size % rec:
            raise InvalidDataError(
                f"{p}: {raw.size} bytes is not a multiple of the {rec}-byte CIFAR-{'100' if cifar100 else '10'} record; "
                f"wrong file or wrong cifar100={cifar100}."
            )
        r = raw.reshape(-1, rec)
        ys.append(r[:, nlab - 1 if (cifar100 and fine_labels) else 0].astype(np.int64))
        xs.append(r[:, nlab:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return Split(np.concatenate(xs), np.concatenate(ys))


_IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npy"}


def load_image_folder(root: str | Path, *, size: tuple[int, int] | None = None, grayscale: bool | None = None) -> tuple[Split, list[str]]:
    """Load an ImageFolder-style tree ``root/<class>/<image>`` as NCHW float32 in [0, 1].

    Classes are the sorted sub-directory names. ``.npy`` images load without Pillow; other formats
    need ``pip install "audit-sdk[images]"``.

    Returns:
        the split and the class names (label i is ``classes[i]``).
    """
    r = Path(root)
    if not r.is_dir():
        raise InvalidDataError(f"image folder {str(r)!r} does not exist or is not a directory.")
    classes = sorted(d.name for d in r.iterdir() if d.is_dir())
    if not classes:
        raise InvalidDataError(f"{r}: no class sub-directories; expected root/<class>/<image files>.")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for label, cls in enumerate(classes):
        for f in sorted((r / cls).iterdir()):
            if f.suffix.lower() not in _IMG_EXT:
                continue
            if f.suffix.lower() == ".npy":
                arr = np.load(f, allow_pickle=False).astype(np.float32)
                if arr.ndim == 2:
                    arr = arr[None]
                elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
                    arr = arr.transpose(2, 0, 1)
                if arr.max() > 1.0:
                    arr = arr / 255.0
            else:
                try:
                    from PIL import Image
                except ImportError as exc:
                    raise BackendUnavailableError(f'reading {f.suffix} images needs Pillow: pip install "audit-sdk[images]".') from exc
                with Image.open(f) as im:
                    mode = "L" if (grayscale or (grayscale is None and im.mode in ("L", "1", "P", "I", "I;16"))) else "RGB"
                    im2 = im.convert(mode)
                    if size is not None:
                        im2 = im2.resize((size[1], size[0]))
                    a = np.asarray(im2, dtype=np.float32) / 255.0
                arr = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            xs.append(arr)
            ys.append(label)
    if not xs:
        raise InvalidDataError(f"{r}: no images found (looked for {sorted(_IMG_EXT)}).")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise InvalidDataError(f"{r}: images have different shapes {sorted(shapes)}; pass size=(H, W) to resize them.")
    return Split(np.stack(xs), np.asarray(ys, dtype=np.int64)), classes


def load_digits_data() -> Split:
    """scikit-learn's embedded digits as NCHW float32 (n, 1, 8, 8) in [0, 1] with int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return Split(x, d.target.astype(np.int64))


def make_audit_data(
    data: Split,
    *,
    n_members: int,
    n_non_members: int,
    n_population: int = 0,
    rng: RNGLike = 0,
    dedupe: bool = True,
) -> tuple[AuditData, np.ndarray]:
    """Split one labelled set into disjoint members, non-members and population.

    Exact duplicate rows are dropped first (``dedupe``), so membership is well defined.

    Returns:
        the AuditData and the indices (into ``data``) of members, non-members, population, in order.
    """
    gen = as_generator(rng)
    idx = np.arange(len(data))
    if dedupe:
        flat = np.ascontiguousarray(data.x.reshape(len(data), -1))
        _, first = np.unique(flat, axis=0, return_index=True)
        idx = np.sort(first)
    need = n_members + n_non_members + n_population
    if need > len(idx):
        raise InvalidDataError(f"asked for {need} samples but only {len(idx)} distinct samples are available.")
    perm = gen.permutation(idx)[:need]
    m, nm, pop = perm[:n_members], perm[n_members : n_members + n_non_members], perm[n_members + n_non_members :]
    audit = AuditData(data.take(m), data.take(nm), data.take(pop) if n_population else None, n_classes=int(data.y.max()) + 1)
    return audit, perm
