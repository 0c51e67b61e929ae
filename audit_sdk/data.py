"""Audit data: members, non-members and an optional population, validated on construction.

Also the loaders for common formats (``.npz``, MNIST idx, CIFAR binary batches, image folders)
and the embedded default data set (scikit-learn's digits, which ships inside scikit-learn).
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, InvalidDataError
from .fileio import atomic_write
from .rng import RNGLike, as_generator
from .tokens import to_token_array

__all__ = [
    "AuditData",
    "Split",
    "load_cifar_binary",
    "load_digits_data",
    "load_image_folder",
    "load_mnist_idx",
    "load_npz",
    "make_audit_data",
    "pack_inputs",
    "read_npz",
    "save_npz",
    "unpack_inputs",
]

#: Separator between the split key and the input name in an ``.npz`` (``x_members__input_ids``).
NPZ_INPUT_SEP = "__"


def pack_inputs(inputs: Mapping[str, Any]) -> np.ndarray:
    """Pack named inputs (``{"input_ids": (n, L), "attention_mask": (n, L)}``) into one structured array.

    A model with several inputs (a text classifier's ids and mask) is audited on one array of n
    records, one field per input, so attacks index, concatenate and count rows as with plain
    features. ``unpack_inputs`` returns the mapping; a Target accepts either form.

    Raises:
        InvalidDataError: no inputs, a non-numeric input, or inputs with different row counts.
    """
    if not inputs:
        raise InvalidDataError("named inputs are empty; expected a mapping like {'input_ids': ids, 'attention_mask': mask}.")
    arrays = {str(k): np.asarray(v) for k, v in inputs.items()}
    rows = {k: (len(a) if a.ndim else -1) for k, a in arrays.items()}
    if len(set(rows.values())) != 1 or -1 in rows.values():
        raise InvalidDataError(f"named inputs must have one row per sample each; got rows {rows}.")
    bad = {k: str(a.dtype) for k, a in arrays.items() if a.dtype.kind not in "biuf"}
    if bad:
        raise InvalidDataError(f"named inputs must be numeric; got {bad}.")
    n = next(iter(rows.values()))
    out = np.empty(n, dtype=np.dtype([(k, a.dtype, a.shape[1:]) for k, a in arrays.items()]))
    for k, a in arrays.items():
        out[k] = a
    return out


def unpack_inputs(x: np.ndarray) -> dict[str, np.ndarray]:
    """The named inputs of a structured array made by ``pack_inputs`` (contiguous copies)."""
    names = x.dtype.names or ()
    return {k: np.ascontiguousarray(x[k]) for k in names}


def _as_features(x: Any) -> Any:
    return pack_inputs(x) if isinstance(x, Mapping) else x


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
    named = xa.dtype.names is not None
    if named:
        fields = unpack_inputs(xa) if xa.ndim == 1 else {}
        if xa.ndim != 1:
            probs.append(f"{name}: named inputs have shape {xa.shape}; expected one record per sample (n_samples,)")
        for k, a in fields.items():
            if a.dtype.kind not in "biuf":
                probs.append(f"{name}: input {k!r} has dtype {a.dtype}; expected numeric")
            elif a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
                probs.append(f"{name}: input {k!r} contains NaN or inf; drop or impute those rows")
    elif xa.dtype.kind not in "biuf":
        probs.append(f"{name}: features have dtype {xa.dtype}; expected numeric (convert to float32)")
    if xa.ndim < 2 and not named:
        probs.append(f"{name}: features have shape {xa.shape}; expected (n_samples, ...) with at least 2 dimensions")
    if ya.ndim != 1:
        probs.append(f"{name}: labels have shape {ya.shape}; expected 1-D (n_samples,)")
    elif ya.dtype.kind == "f":
        if np.all(np.isfinite(ya)) and np.all(ya == np.round(ya)) and (ya.size == 0 or float(np.abs(ya).max()) < 2**53):
            ya = ya.astype(np.int64)
        else:
            probs.append(f"{name}: labels are non-integer floats; expected class indices 0..K-1")
    elif ya.dtype.kind not in "iu":
        probs.append(f"{name}: labels have dtype {ya.dtype}; expected integers 0..K-1 (encode string labels first)")
    if xa.ndim >= 1 and ya.ndim == 1 and len(xa) != len(ya):
        probs.append(f"{name}: {len(xa)} feature rows but {len(ya)} labels; expected one label per row")
    if xa.ndim >= 1 and len(xa) == 0:
        probs.append(f"{name}: is empty; expected at least one sample")
    if not named and xa.dtype.kind == "f" and xa.size and not np.isfinite(xa).all():
        bad = int((~np.isfinite(xa.reshape(len(xa), -1))).any(axis=1).sum()) if xa.ndim >= 1 else 1
        probs.append(f"{name}: {bad} rows contain NaN or inf; drop or impute them")
    if ya.dtype.kind in "iu" and ya.size and ya.min() < 0:
        probs.append(f"{name}: labels contain negative values ({int(ya.min())}); expected 0..K-1")
    return probs, xa, ya


def _describe_dtype(dt: np.dtype) -> dict[str, str] | str:
    if not dt.names:
        return str(dt)
    return {k: f"{dt.fields[k][0].base}{list(dt.fields[k][0].shape)}" for k in dt.names}  # type: ignore[index]


def _row_hashes(x: np.ndarray) -> set[bytes]:
    """Hashes of each row's values, independent of how they are stored.

    Rows are compared as float64 values with -0.0 folded onto 0.0, so the same sample stored as
    uint8 in one set and float32 in another (or as -0.0 and 0.0) is caught as shared. Named inputs
    (records of several arrays) are compared on all their fields side by side.
    """
    if x.dtype.names:
        fields = [np.asarray(x[k]).reshape(len(x), -1) for k in x.dtype.names]
        width = sum(f.shape[1] for f in fields)
    else:
        fields = [x.reshape(len(x), -1)]
        width = fields[0].shape[1]
    out: set[bytes] = set()
    step = max(1, (1 << 24) // max(1, width * 8))  # ~16 MiB of float64 at a time, whatever the data size
    for start in range(0, len(x), step):
        block = np.concatenate([f[start : start + step].astype(np.float64) for f in fields], axis=1)
        canon = np.ascontiguousarray(block + 0.0)  # + 0.0 turns -0.0 into 0.0
        out.update(hashlib.blake2b(row.tobytes(), digest_size=12).digest() for row in canon)
    return out


class AuditData:
    """Members, non-members and an optional population (data the attacker may use).

    Validated on construction; every problem is reported at once::

        data = AuditData(members=(x_in, y_in), non_members=(x_out, y_out), population=(x_aux, y_aux))
        text = AuditData(({"input_ids": ids_in, "attention_mask": mask_in}, y_in), ({"input_ids": ids_out, ...}, y_out))

    A model with several inputs takes named inputs: a dict of arrays in place of ``x``, stored as
    one structured array (``pack_inputs``) so attacks index and concatenate rows as usual.

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
            p, xa, ya = _problems(name, _as_features(x), y)
            problems += p
            if xa is not None and ya is not None:
                arrays[name] = (xa, ya)
        shapes = {name: a[0].shape[1:] for name, a in arrays.items() if a[0].ndim >= 2 or a[0].dtype.names}
        named = {name: a[0].dtype for name, a in arrays.items() if a[0].dtype.names}
        if named and (len(named) != len(arrays) or len(set(named.values())) > 1):
            problems.append(
                "named inputs differ between sets: "
                + ", ".join(f"{k} {_describe_dtype(arrays[k][0].dtype)}" for k in arrays)
                + "; every set must hold the same inputs with the same per-sample shapes and dtypes"
            )
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
        # checked even when other problems were found (every problem is reported at once), on the sets
        # whose rows can be compared with the members' (numeric, same per-sample shape and inputs)
        ref = arrays["members"][0] if "members" in arrays else None

        def comparable(x: np.ndarray) -> bool:
            if ref is None or x.ndim < 1 or len(x) == 0 or x.shape[1:] != ref.shape[1:] or x.dtype.names != ref.dtype.names:
                return False
            return bool(x.dtype.names) or (x.ndim >= 2 and x.dtype.kind in "biuf")

        if check_disjoint and ref is not None and comparable(ref):
            hashes = {name: _row_hashes(a[0]) for name, a in arrays.items() if comparable(a[0])}
            overlap = hashes["members"] & hashes.get("non_members", set())
            if overlap:
                problems.append(
                    f"{len(overlap)} feature rows appear in both members and non-members; membership is undefined "
                    "for them. Deduplicate the data, or pass check_disjoint=False to audit anyway"
                )
            for other in ("members", "non_members"):
                shared = hashes.get("population", set()) & hashes.get(other, set())
                if shared:
                    problems.append(
                        f"{len(shared)} feature rows appear in both the population and the {other.replace('_', '-')}; "
                        "reference models would treat them as both seen and unseen. Remove them from the population, "
                        "or pass check_disjoint=False to audit anyway"
                    )
        if problems:
            raise InvalidDataError("invalid audit data: " + "; ".join(problems) + ".")
        self.members = Split(*arrays["members"])
        self.non_members = Split(*arrays["non_members"])
        self.population = Split(*arrays["population"]) if "population" in arrays else None
        self.n_classes: int = int(n_classes)  # type: ignore[arg-type]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Per-sample shape of plain features; ``()`` for named inputs (see ``input_names``)."""
        return tuple(self.members.x.shape[1:])

    @property
    def input_names(self) -> tuple[str, ...] | None:
        """Names of the model inputs when the features are named inputs (``pack_inputs``), else None."""
        names = self.members.x.dtype.names
        return tuple(names) if names else None

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
        } | ({"inputs": _describe_dtype(self.members.x.dtype)} if self.input_names else {})

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"AuditData(members={s['members']}, non_members={s['non_members']}, population={s['population']}, shape={s['feature_shape']})"
        )


# --------------------------------------------------------------------------- loaders
_NPZ_KEYS = ("x_members", "y_members", "x_non_members", "y_non_members")

#: Default cap on the decompressed size of the arrays one .npz may hold (1 GiB); raise it with
#: ``max_bytes=`` or the environment variable ``AUDIT_SDK_MAX_DATA_BYTES`` (e.g. ``8e9``).
DEFAULT_MAX_DATA_BYTES = 1 << 30


def max_data_bytes(max_bytes: int | float | None = None) -> int:
    """The cap on a data file's decompressed size: ``max_bytes``, else ``AUDIT_SDK_MAX_DATA_BYTES``, else 1 GiB."""
    import os

    if max_bytes is not None:
        return int(max_bytes)
    raw = os.environ.get("AUDIT_SDK_MAX_DATA_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_DATA_BYTES
    try:
        value = float(raw)
    except ValueError:
        raise InvalidDataError(f"AUDIT_SDK_MAX_DATA_BYTES={raw!r} is not a number of bytes (e.g. 8e9).") from None
    if not value > 0:
        raise InvalidDataError(f"AUDIT_SDK_MAX_DATA_BYTES must be > 0; got {raw!r}.")
    return int(value)


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and header length of the .npy stream ``fh`` (read from its start)."""
    from numpy.lib import format as npf

    version = npf.read_magic(fh)
    if version == (1, 0):
        shape, _fortran, dtype = npf.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _fortran, dtype = npf.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(int(s) for s in shape), np.dtype(dtype), int(fh.tell())


def read_npz(path: str | Path, *, max_bytes: int | float | None = None) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` safely: no pickle, sizes checked before anything is allocated.

    Each member's header is read first: object arrays are refused (they would need pickle), a
    member whose stored size disagrees with its header is reported as truncated or corrupt, and
    the arrays' total decompressed size must stay under ``max_bytes`` (see ``max_data_bytes``),
    so a small file that decompresses to gigabytes is refused before it is expanded.

    Raises:
        InvalidDataError: naming the file and the member at fault.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise InvalidDataError(f"data file {str(p)!r} {what}; pass the path to an .npz file.")
    cap = max_data_bytes(max_bytes)
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidDataError(f"{p}: is not a readable .npz file (not a zip archive: {exc}); write it with numpy.savez.") from None
    arrays: dict[str, np.ndarray] = {}
    with zf:
        plan: list[tuple[zipfile.ZipInfo, str]] = []
        total = 0
        for info in zf.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            try:
                with zf.open(info) as fh:
                    shape, dtype, header = _npy_header(fh)
            except Exception as exc:  # noqa: BLE001 - any failure here means a damaged member
                raise InvalidDataError(
                    f"{p}: member {key!r} is not a readable .npy array ({type(exc).__name__}: {exc}); the file is corrupt."
                ) from None
            if dtype.hasobject:
                raise InvalidDataError(
                    f"{p}: member {key!r} holds object arrays, which are refused (no pickle loading); save plain numeric arrays."
                )
            nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize if shape else dtype.itemsize
            if header + nbytes != info.file_size:
                raise InvalidDataError(
                    f"{p}: member {key!r} is truncated or corrupt: its header promises {nbytes} bytes of data "
                    f"(shape {shape}, {dtype}) but it holds {max(info.file_size - header, 0)}."
                )
            total += nbytes
            plan.append((info, key))
        if total > cap:
            raise InvalidDataError(
                f"{p}: its arrays decompress to {total / 2**20:.1f} MiB, over the {cap / 2**20:.0f} MiB cap on data files "
                "(a guard against decompression bombs). If the data is genuine, raise the cap: "
                "AUDIT_SDK_MAX_DATA_BYTES=<bytes> (or max_bytes= in Python)."
            )
        for info, key in plan:
            try:
                with zf.open(info) as fh:
                    arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - CRC errors, short reads: the member is damaged
                raise InvalidDataError(f"{p}: member {key!r} is truncated or corrupt ({type(exc).__name__}: {exc}).") from None
    return arrays


def _npz_features(arrays: dict[str, np.ndarray], key: str, p: Path) -> np.ndarray | None:
    """``key`` as a plain array, or the named inputs stored as ``key__<input>`` packed into records."""
    prefix = key + NPZ_INPUT_SEP
    named = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if key in arrays and named:
        raise InvalidDataError(
            f"{p}: holds both {key!r} and named inputs {sorted(prefix + n for n in named)}; keep one form (a plain array, or named inputs)."
        )
    if named:
        return pack_inputs(dict(sorted(named.items())))
    return arrays.get(key)


def load_npz(
    path: str | Path, *, n_classes: int | None = None, check_disjoint: bool = True, max_bytes: int | float | None = None
) -> AuditData:
    """Load AuditData from an ``.npz`` with keys ``x_members``, ``y_members``, ``x_non_members``,
    ``y_non_members`` and optionally ``x_population``, ``y_population``.

    A model with several named inputs (a text classifier) stores one array per input and split,
    ``x_<split>__<input name>``: ``x_members__input_ids``, ``x_members__attention_mask``, ... with
    the labels as ``y_<split>``; they load as named inputs (``pack_inputs``).

    Token data (for language models, see ``audit_sdk.sequence``): integer ``x_<set>`` ids (n, T)
    with ``len_<set>`` lengths or ``mask_<set>`` masks (or -1 padding), labels optional.

    Never unpickles: an untrusted file cannot run code. Sizes are checked before loading (see
    ``read_npz``; ``max_bytes`` raises the cap).
    """
    p = Path(path)
    arrays = read_npz(p, max_bytes=max_bytes)
    if _is_token_npz(arrays):
        return _token_audit_data(arrays, p, check_disjoint=check_disjoint)
    x = {k: _npz_features(arrays, k, p) for k in ("x_members", "x_non_members", "x_population")}
    missing = [k for k in _NPZ_KEYS if (x.get(k) if k.startswith("x_") else arrays.get(k)) is None]
    if (x["x_population"] is not None) != ("y_population" in arrays):  # half a population is a mistake, not "no population"
        missing.append("y_population" if x["x_population"] is not None else "x_population")
    if missing:
        raise InvalidDataError(
            f"{p}: missing keys {missing}; found {sorted(arrays)}. Expected {list(_NPZ_KEYS)} (+ x_population and y_population, together), "
            f"or named inputs as x_members{NPZ_INPUT_SEP}<input name> (e.g. x_members{NPZ_INPUT_SEP}input_ids)."
        )
    pop = (x["x_population"], arrays["y_population"]) if x["x_population"] is not None else None
    return AuditData(
        (x["x_members"], arrays["y_members"]),
        (x["x_non_members"], arrays["y_non_members"]),
        pop,
        n_classes=n_classes,
        check_disjoint=check_disjoint,
    )


def _is_token_npz(arrays: dict[str, np.ndarray]) -> bool:
    # token data (audit_sdk.sequence): integer ids (n, T), no labels needed, maybe lengths / masks
    x = arrays.get("x_members")
    has_len = any(k.startswith(("len_", "mask_")) for k in arrays)
    return x is not None and x.ndim == 2 and x.dtype.kind in "iu" and ("y_members" not in arrays or has_len)


def _token_audit_data(arrays: dict[str, np.ndarray], p: Path, *, check_disjoint: bool) -> AuditData:
    sets = ["members", "non_members"] + (["population"] if "x_population" in arrays else [])
    if "x_non_members" not in arrays:
        raise InvalidDataError(f"{p}: token data needs x_non_members beside x_members; found {sorted(arrays)}.")
    splits = []
    T = max(arrays[f"x_{s}"].shape[-1] for s in sets)
    for s in sets:
        x = to_token_array(arrays[f"x_{s}"], lengths=arrays.get(f"len_{s}"), mask=arrays.get(f"mask_{s}"), name=f"{p}: x_{s}")
        x = np.pad(x, ((0, 0), (0, T - x.shape[1])), constant_values=-1)  # one width for every set
        y = arrays.get(f"y_{s}", np.zeros(len(x), dtype=np.int64))
        splits.append((x, y))
    return AuditData(*splits, check_disjoint=check_disjoint)


def save_npz(data: AuditData, path: str | Path) -> Path:
    """Write AuditData in the format ``load_npz`` reads (named inputs as ``x_<split>__<input>``)."""
    arrays: dict[str, np.ndarray] = {}
    splits = [("members", data.members), ("non_members", data.non_members)]
    if data.population is not None:
        splits.append(("population", data.population))
    for name, split in splits:
        if split.x.dtype.names:
            arrays.update({f"x_{name}{NPZ_INPUT_SEP}{k}": v for k, v in unpack_inputs(split.x).items()})
        else:
            arrays[f"x_{name}"] = split.x
        arrays[f"y_{name}"] = split.y
    p = Path(path)
    p = p if p.suffix == ".npz" else p.with_name(p.name + ".npz")  # np.savez's naming rule
    with atomic_write(p) as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
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
        if data.x.dtype.names:  # named inputs: compare records byte for byte
            flat = flat.view(np.uint8).reshape(len(data), -1)
        _, first = np.unique(flat, axis=0, return_index=True)
        idx = np.sort(first)
    need = n_members + n_non_members + n_population
    if need > len(idx):
        raise InvalidDataError(f"asked for {need} samples but only {len(idx)} distinct samples are available.")
    perm = gen.permutation(idx)[:need]
    m, nm, pop = perm[:n_members], perm[n_members : n_members + n_non_members], perm[n_members + n_non_members :]
    audit = AuditData(data.take(m), data.take(nm), data.take(pop) if n_population else None, n_classes=int(data.y.max()) + 1)
    return audit, perm
