"""Atomic file writes: the one helper every file audit-sdk writes goes through.

    with atomic_write("out/report.json", "w") as fh:
        fh.write(text)
    write_text_atomic("out/privacy.json", text)

The content goes to a temporary file in the destination's folder, is flushed to disk, then renamed
over the destination (``os.replace``: atomic on POSIX and Windows). A crash, a full disk or an
error half-way leaves the previous file untouched and no half-written file behind, so a reader
(or a resumed run reading its cache) never sees invalid content.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "write_bytes_atomic", "write_text_atomic"]

_UMASK: int | None = None


def _file_mode() -> int:
    # mkstemp creates 0600 files; give the result the mode open() would have given it
    global _UMASK
    if _UMASK is None:
        try:
            with open(f"/proc/{os.getpid()}/status") as fh:  # reading the umask without changing it (Linux)
                line = next((ln for ln in fh if ln.startswith("Umask:")), "")
            _UMASK = int(line.split()[1], 8) if line else 0o022
        except OSError:
            _UMASK = 0o022
    return 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    For libraries that want a file name rather than a handle (``torch.onnx.export``). The folder
    is created when missing. On an error the temporary file is removed and the error propagates.

    Args:
        suffix: ending of the temporary name, for writers that look at the extension.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".tmp{suffix}", dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` on success.

    Args:
        mode: ``"wb"`` (default) or ``"w"`` (text; ``encoding`` defaults to UTF-8).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb'; got {mode!r}.")
    with atomic_path(path) as tmp:
        enc = (encoding or "utf-8") if mode == "w" else None
        with open(tmp, mode, encoding=enc) as fh:
            yield fh
            fh.flush()


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)
