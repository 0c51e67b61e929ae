"""Score data sets larger than memory: batches streamed from disk, scores written as they come.

    from audit_sdk.streaming import open_array, stream_scores

    x = open_array("members_x.npy")                 # memory-mapped, nothing loaded yet
    y = open_array("audit.npz", "y_members")        # an .npz member (mapped if stored, streamed if compressed)
    res = stream_scores(target, x, y, batch_size=8192, out_path="scores/members_loss.npy")
    scores = np.load(res.path, mmap_mode="r")

Memory stays proportional to the batch, not the data set: inputs are read through memory maps (or,
for a compressed ``.npz`` member, decompressed sequentially), pages already scored are handed
back to the OS, and each batch's scores go straight into an ``.npy`` file on disk. A progress file
next to the output (``<out>.progress.json``) records how many rows are done, so
``stream_scores(..., resume=True)`` after a crash continues where it stopped.

``stream_membership`` scores members and non-members this way and returns an ``AttackResult``
(a threshold-free membership audit: ROC AUC, TPR at low FPR, ... from the core metrics); the
score arrays it keeps in memory hold 8 bytes per example, the features never are.

``Target._batched_raw`` (used by ``Target.loss``/``predict_proba`` on whole arrays) keeps all
outputs in memory, which is right for ordinary sizes; this module is the separate path for
millions of examples.
"""

from __future__ import annotations

import json
import mmap
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias

import numpy as np

from .errors import InvalidDataError, InvalidParameterError
from .fileio import write_text_atomic

__all__ = ["SCORES", "NpyStream", "StreamResult", "iter_batches", "open_array", "stream_scores"]


class NpyStream:
    """A ``.npy`` array read front to back from a compressed ``.npz`` member (no random access).

    Has ``shape``, ``dtype`` and ``len()`` like an array; ``iter_batches`` reads it in order.
    """

    def __init__(self, path: Path, member: str) -> None:
        self.path, self.member = path, member
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            self.shape, self.dtype, self._fortran = _read_npy_header(fh, f"{path}:{member}")
        if self._fortran and len(self.shape) > 1:
            raise InvalidDataError(
                f"{path}:{member} is stored in Fortran order, which cannot be streamed by rows; "
                "re-save it C-ordered (np.ascontiguousarray) or as an uncompressed .npy."
            )

    def __len__(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` from row ``start`` on (earlier rows are read and dropped)."""
        row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as fh:
            _read_npy_header(fh, self.member)
            skip = start
            while skip > 0:
                take = min(skip, batch_size)
                _read_exact(fh, take * row_bytes, self.member)
                skip -= take
            for i in range(start, len(self), batch_size):
                rows = min(batch_size, len(self) - i)
                buf = _read_exact(fh, rows * row_bytes, self.member)
                yield i, np.frombuffer(buf, dtype=self.dtype).reshape((rows, *self.row_shape))


ArraySource: TypeAlias = "np.ndarray | NpyStream"


def _read_exact(fh: IO[bytes], n: int, name: str) -> bytes:
    buf = fh.read(n)
    if len(buf) != n:
        raise InvalidDataError(f"{name} ended early (wanted {n} more bytes, got {len(buf)}); the file is truncated.")
    return buf


def _read_npy_header(fh: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    except ValueError as exc:
        raise InvalidDataError(f"{name} is not a .npy array ({exc}).") from exc
    if dtype.hasobject:
        raise InvalidDataError(f"{name} holds Python objects (it would need pickle); store numeric arrays.")
    return tuple(shape), np.dtype(dtype), bool(fortran)


def open_array(path: str | Path, member: str | None = None) -> ArraySource:
    """Open an array on disk without reading it into memory.

    Args:
        path: an ``.npy`` file (memory-mapped) or an ``.npz`` archive (then ``member`` names the
            array, with or without ``.npy``). A member written by ``np.savez`` (stored) is
            memory-mapped at its offset inside the zip; one written by ``np.savez_compressed``
            is returned as an ``NpyStream`` read sequentially.

    Raises:
        InvalidDataError: a missing file or member, an object array, or not a numpy file.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"{p} does not exist; pass the path to an .npy file or an .npz archive.")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise InvalidDataError(f"{p} cannot be memory-mapped ({exc}); store a numeric array with np.save.") from exc
        return arr
    if member is None:
        raise InvalidParameterError(f"{p} is an archive; name the array to open, e.g. open_array({str(p)!r}, 'x_members').")
    name = member if member.endswith(".npy") else member + ".npy"
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as exc:
        raise InvalidDataError(f"{p} is not an .npz archive (not a zip file); write it with numpy.savez.") from exc
    with zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            names = sorted(n.removesuffix(".npy") for n in zf.namelist())
            raise InvalidDataError(f"{p} has no array {member!r}; it holds {names}.") from None
        if info.compress_type != zipfile.ZIP_STORED:
            return NpyStream(p, name)
    with open(p, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            raise InvalidDataError(f"{p}: damaged zip entry for {member!r}.")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        shape, dtype, fortran = _read_npy_header(fh, f"{p}:{member}")
        offset = fh.tell()
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _release(arr: Any, start: int, stop: int) -> None:
    """Hand the pages of rows [start, stop) of a memory-mapped array back to the OS.

    Read-only (or flushed) file pages are re-read from disk if touched again, so this only bounds
    resident memory; it never loses data. Best effort: a plain array is left alone.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or stop <= start:
        return
    if getattr(arr, "mode", "c") not in ("r", "r+", "w+"):
        return  # copy-on-write ('c'): dropping pages would drop the caller's private changes
    row_bytes = arr.strides[0] if arr.ndim else arr.itemsize
    try:
        # where this (possibly sliced) view starts inside the mapping
        base = arr.__array_interface__["data"][0] - np.frombuffer(mm, dtype=np.uint8, count=1).__array_interface__["data"][0]
        lo = base + start * row_bytes
        hi = min(base + stop * row_bytes, len(mm))
        lo -= lo % mmap.PAGESIZE
        if 0 <= lo < hi:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError, TypeError):  # not supported here: memory is merely not returned early
        pass


def iter_batches(source: ArraySource, batch_size: int, *, start: int = 0, release: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, batch)`` over ``source`` from row ``start``.

    A batch of a memory-mapped source is a C-contiguous view (no copy); with ``release`` its pages
    are returned to the OS once the consumer asks for the next batch (reading an old batch later
    still works: the pages come back from the file).
    """
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
    if isinstance(source, NpyStream):
        yield from source.batches(batch_size, start)
        return
    n = len(source)
    for i in range(start, n, batch_size):
        j = min(n, i + batch_size)
        yield i, np.ascontiguousarray(source[i:j])
        if release:
            _release(source, i, j)


def _loss(target: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return target.loss(x, y)


def _confidence(target: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return target.predict_proba(x).max(axis=1)


def _true_class_proba(target: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = target.predict_proba(x)
    return p[np.arange(len(y)), target.check_labels(y)]


#: Built-in per-example scores for ``stream_scores``.
SCORES: dict[str, Callable[[Any, np.ndarray, np.ndarray], np.ndarray]] = {
    "loss": _loss,
    "confidence": _confidence,
    "true-class-proba": _true_class_proba,
}


#: ``stream_scores`` flushes its output and records progress at most this often (and at the end).
CHECKPOINT_SECONDS = 1.0


@dataclass
class StreamResult:
    """Where ``stream_scores`` wrote, how many rows, and how long it took."""

    path: Path
    n: int
    batches: int
    seconds: float
    resumed_from: int = 0

    def load(self) -> np.ndarray:
        """The scores, memory-mapped read-only."""
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


def _progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(obj))


def stream_scores(
    target: Any,
    x: ArraySource | str | Path,
    y: ArraySource | str | Path,
    *,
    out_path: str | Path,
    batch_size: int = 8192,
    score: str | Callable[[Any, np.ndarray, np.ndarray], np.ndarray] = "loss",
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> StreamResult:
    """Score every example of (x, y) with ``target``, batch by batch, into ``out_path`` (.npy, float64).

    Args:
        target: an ``audit_sdk.Target`` (or anything with ``loss``/``predict_proba``).
        x, y: arrays, memory maps, ``NpyStream``s, or paths to ``.npy`` files.
        out_path: the ``.npy`` file the scores are written into as batches finish.
        batch_size: rows per batch; memory use grows with it, not with the data set.
        score: ``"loss"`` (per-example cross-entropy; lower suggests a member), ``"confidence"``
            (top probability), ``"true-class-proba"``, or ``fn(target, x_batch, y_batch) -> (b,)``.
        resume: continue an interrupted run from its progress file (same data size and score);
            without it an existing output is overwritten.
        progress: ``progress(rows_done, n)`` after each batch.

    Raises:
        InvalidDataError: x and y differ in length, or a score has the wrong shape.
        InvalidParameterError: an unknown score name or a bad batch size.
    """
    xs = open_array(x) if isinstance(x, (str, Path)) else x
    ys = open_array(y) if isinstance(y, (str, Path)) else y
    n = len(xs)
    if len(ys) != n:
        raise InvalidDataError(f"{n} inputs but {len(ys)} labels; pass one label per input.")
    if isinstance(score, str):
        if score not in SCORES:
            raise InvalidParameterError(f"unknown score {score!r}; expected one of {sorted(SCORES)} or a callable.")
        score_fn, score_name = SCORES[score], score
    else:
        score_fn, score_name = score, getattr(score, "__qualname__", "custom")
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    prog_path = _progress_path(out)
    start = 0
    if resume and out.is_file() and prog_path.is_file():
        try:
            state = json.loads(prog_path.read_text())
        except (OSError, json.JSONDecodeError):
            state = {}
        if state.get("n") == n and state.get("score") == score_name:
            start = int(state.get("done", 0))
    if start:
        scores = np.lib.format.open_memmap(out, mode="r+")
        if scores.shape != (n,) or scores.dtype != np.float64:
            start = 0
    if not start:
        scores = np.lib.format.open_memmap(out, mode="w+", dtype=np.float64, shape=(n,))
        _write_json_atomic(prog_path, {"n": n, "done": 0, "score": score_name})
    t0 = time.perf_counter()
    batches = 0
    checkpointed, last_checkpoint = start, t0
    try:
        ybatches = iter_batches(ys, batch_size, start=start)
        for (i, xb), (_, yb) in zip(iter_batches(xs, batch_size, start=start), ybatches):
            s = np.asarray(score_fn(target, xb, yb), dtype=np.float64)
            if s.shape != (len(xb),):
                raise InvalidDataError(f"score {score_name!r} returned shape {s.shape} for a batch of {len(xb)}; expected ({len(xb)},).")
            j = i + len(xb)
            scores[i:j] = s
            # Checkpoint (flush, then record progress) at most every CHECKPOINT_SECONDS: tiny
            # batches would otherwise spend their time in msync; a crash recomputes at most that.
            if j == n or time.perf_counter() - last_checkpoint >= CHECKPOINT_SECONDS:
                scores.flush()
                _release(scores, checkpointed, j)
                _write_json_atomic(prog_path, {"n": n, "done": j, "score": score_name})
                checkpointed, last_checkpoint = j, time.perf_counter()
            batches += 1
            if progress:
                progress(j, n)
    finally:
        del scores
    return StreamResult(path=out, n=n, batches=batches, seconds=time.perf_counter() - t0, resumed_from=start)


#: Whether a high value of each built-in score suggests a member.
HIGHER_IS_MEMBER = {"loss": False, "confidence": True, "true-class-proba": True}


def stream_membership(
    target: Any,
    members: tuple[Any, Any],
    non_members: tuple[Any, Any],
    *,
    out_dir: str | Path,
    score: str | Callable[[Any, np.ndarray, np.ndarray], np.ndarray] = "loss",
    higher_is_member: bool | None = None,
    batch_size: int = 8192,
    resume: bool = False,
) -> Any:
    """A streamed, threshold-free membership audit of (members, non-members) with one score.

    Each side's per-example scores are written to ``out_dir/{members,non_members}_<score>.npy``
    by ``stream_scores`` (so ``resume=True`` continues after a crash); the result's metrics are
    the core's (``audit_sdk.metrics``), on membership scores oriented so higher means member.

    Args:
        members, non_members: ``(x, y)`` pairs of arrays, memory maps, ``NpyStream``s or ``.npy`` paths.
        higher_is_member: orientation of a custom score (built-in scores know theirs).

    Returns:
        An ``AttackResult`` (kind ``membership``) named ``streaming.<score>``.
    """
    from .results import AttackResult

    name = score if isinstance(score, str) else getattr(score, "__name__", "custom")
    if higher_is_member is None:
        if not isinstance(score, str):
            raise InvalidParameterError("a custom score needs higher_is_member=True/False (does a high value suggest a member?).")
        higher_is_member = HIGHER_IS_MEMBER.get(score, True)
    out = Path(out_dir)
    res_in = stream_scores(target, *members, out_path=out / f"members_{name}.npy", batch_size=batch_size, score=score, resume=resume)
    res_out = stream_scores(
        target, *non_members, out_path=out / f"non_members_{name}.npy", batch_size=batch_size, score=score, resume=resume
    )
    scores = np.concatenate([res_in.load(), res_out.load()])
    if not higher_is_member:
        np.negative(scores, out=scores)
    truth = np.zeros(res_in.n + res_out.n, dtype=bool)
    truth[: res_in.n] = True
    return AttackResult(
        attack=f"streaming.{name}",
        params={"score": name, "batch_size": batch_size},
        scores=scores,
        truth=truth,
        extra={"scores_files": [str(res_in.path), str(res_out.path)], "n_members": res_in.n, "n_non_members": res_out.n},
        seconds=res_in.seconds + res_out.seconds,
    )
