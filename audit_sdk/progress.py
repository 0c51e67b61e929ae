"""Progress of long steps: a bar in a terminal, periodic plain lines in a pipe or CI log, or nothing.

One helper for the whole SDK (training, calibration, every attack's inner loop, grids), so every
long step reports the same way and ``--quiet`` silences all of them::

    from audit_sdk.progress import track

    with track("training", total=epochs, enabled=progress) as bar:
        for epoch in range(epochs):
            ...
            bar.advance(loss=0.12, epsilon=1.3)       # figures shown beside the count

``enabled``: True (show), False (hide), or None (default): follow the mode set around the call by
``progress_mode(...)`` (the CLI sets it from ``--quiet``), else ``AUDIT_SDK_PROGRESS``
(``auto``, ``bar``, ``lines``, ``off``), else off, so a library call prints nothing unless asked.
``auto`` draws rich bars when stderr is a terminal and prints a plain line at most every
``AUDIT_SDK_PROGRESS_INTERVAL`` seconds (default 10) otherwise. Everything goes to stderr; stdout
stays clean for tables and ``--json``.

Nested steps share one display: an attack's bar sits under the audit's, and a step nested in
another prints its plain lines only once it has run for an interval (short inner steps stay
quiet in a log). A tracker is also a ``progress(done, total)`` callback (the executor's).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

__all__ = ["Tracker", "progress_enabled", "progress_mode", "track"]

Mode = Literal["auto", "bar", "lines", "off"]
_MODES = ("auto", "bar", "lines", "off")
_MODE: ContextVar[str | None] = ContextVar("audit_sdk_progress_mode", default=None)
# the rich Progress shared by nested bars of one context, and how deep the nesting is
_LIVE: ContextVar[Any] = ContextVar("audit_sdk_progress_live", default=None)
_DEPTH: ContextVar[int] = ContextVar("audit_sdk_progress_depth", default=0)
_ROOT: ContextVar[Any] = ContextVar("audit_sdk_progress_root", default=None)


class _Heartbeat:
    """Plain-line mode: the open trackers of one top-level step, and a thread that prints the
    innermost one's state whenever nothing was printed for an interval (a step whose inner loop
    reports nothing still shows it is alive in a log)."""

    def __init__(self) -> None:
        self.stack: list[Tracker] = []
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sdk-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(max(0.05, min(1.0, _interval() / 4))):
            interval = _interval()
            if interval and time.monotonic() - self.last >= interval and self.stack:
                self.stack[-1]._line()


def _env_mode() -> str | None:
    v = os.environ.get("AUDIT_SDK_PROGRESS", "").strip().lower()
    return v if v in _MODES else None


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("AUDIT_SDK_PROGRESS_INTERVAL", "10")))
    except ValueError:
        return 10.0


@contextmanager
def progress_mode(mode: Mode | bool | None) -> Iterator[None]:
    """Set the progress mode for the calls made inside the block (``True`` = ``auto``, ``False`` = ``off``).

    ``None`` leaves the current mode. Modes are per thread / async context, so two audits in two
    threads do not fight over it.
    """
    if mode is None:
        yield
        return
    value = "auto" if mode is True else "off" if mode is False else str(mode)
    if value not in _MODES:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"progress mode must be one of {', '.join(_MODES)}; got {mode!r}.")
    token = _MODE.set(value)
    try:
        yield
    finally:
        _MODE.reset(token)


def _resolve(enabled: bool | str | None) -> str:
    if enabled is False:
        return "off"
    mode: str | None = _MODE.get() or _env_mode()
    if mode == "off":  # --quiet / AUDIT_SDK_PROGRESS=off win over a component's own default
        return "off"
    if isinstance(enabled, str):
        mode = enabled
    elif enabled is True and mode is None:
        mode = "auto"
    mode = mode or "off"
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    return mode


def progress_enabled(enabled: bool | str | None = None) -> bool:
    """Whether ``track(..., enabled=enabled)`` would show anything here."""
    return _resolve(enabled) != "off"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Tracker:
    """Handle of one tracked step: ``advance``, ``update``, or call it as ``progress(done, total)``."""

    def __init__(
        self, description: str, total: int | None, mode: str, *, nested: bool, live: Any = None, root: _Heartbeat | None = None
    ) -> None:
        self.description = description
        self.total = total
        self.completed = 0
        self.info: dict[str, Any] = {}
        self._mode = mode
        self._live = live
        self._task = live.add_task(description, total=total) if live is not None else None
        self._t0 = self._last = time.monotonic()
        self._printed = False
        self._nested = nested
        self._failed = False
        self._root = root
        if root is not None:
            root.stack.append(self)
        if mode == "lines" and not nested:
            self._line()

    def _suffix(self) -> str:
        return "  ".join(f"{k} {_fmt(v)}" for k, v in self.info.items() if v is not None)

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._t0
        count = f"{self.completed}/{self.total} " if self.total else (f"{self.completed} " if self.completed else "")
        took = f"{elapsed:.1f} s" if elapsed < 10 else f"{elapsed:.0f} s"
        state = f"done in {took}" if final else ("started" if elapsed < 0.05 else f"{took}")
        extra = self._suffix()
        line = f"{self.description}: {count}({state}){'  ' + extra if extra else ''}\n"
        lock = self._root.lock if self._root is not None else threading.Lock()
        with lock:
            sys.stderr.write(line)
            sys.stderr.flush()
        self._printed = True
        self._last = time.monotonic()
        if self._root is not None:
            self._root.last = self._last

    def update(self, completed: int | None = None, *, total: int | None = None, description: str | None = None, **info: Any) -> None:
        """Set the count (and optionally the total, the description, figures shown beside it)."""
        if completed is not None:
            self.completed = int(completed)
        if total is not None:
            self.total = int(total)
        if description is not None:
            self.description = description
        self.info.update(info)
        if self._mode == "bar" and self._live is not None:
            extra = self._suffix()
            self._live.update(
                self._task, completed=self.completed, total=self.total, description=self.description + (f"  [dim]{extra}" if extra else "")
            )
        elif self._mode == "lines" and time.monotonic() - self._last >= _interval():
            self._line()

    def advance(self, n: int = 1, **info: Any) -> None:
        """Count ``n`` more units done (and update the figures shown beside the count)."""
        self.update(self.completed + n, **info)

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total=total)

    def _close(self) -> None:
        if self._root is not None and self in self._root.stack:
            self._root.stack.remove(self)
        if self._mode == "lines" and (self._printed or not self._nested) and not self._failed:
            self._line(final=True)
        if self._live is not None and self._task is not None:
            self._live.remove_task(self._task)


class _Null(Tracker):
    def __init__(self) -> None:
        self.description, self.total, self.completed, self.info = "", None, 0, {}
        self._mode = "off"

    def update(self, completed: int | None = None, *, total: int | None = None, description: str | None = None, **info: Any) -> None:
        return None

    def _close(self) -> None:
        return None


@contextmanager
def track(description: str, total: int | None = None, *, enabled: bool | str | None = None) -> Iterator[Tracker]:
    """Track one long step (see the module docstring); yields a Tracker, a no-op one when hidden."""
    mode = _resolve(enabled)
    if mode == "off":
        yield _Null()
        return
    depth = _DEPTH.get()
    depth_token = _DEPTH.set(depth + 1)
    # a progress mode given explicitly here applies to the steps nested inside it too
    mode_token = _MODE.set(mode) if enabled is not None else None
    live = _LIVE.get() if mode == "bar" else None
    own_live = None
    if mode == "bar" and live is None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        own_live = live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        live.start()
    live_token = _LIVE.set(live) if own_live is not None else None
    root = _ROOT.get() if mode == "lines" else None
    own_root = None
    if mode == "lines" and root is None:
        own_root = root = _Heartbeat()
    root_token = _ROOT.set(root) if own_root is not None else None
    tracker = Tracker(description, total, mode, nested=depth > 0, live=live, root=root)
    if own_root is not None:
        own_root.start()
    try:
        yield tracker
    except BaseException:
        tracker._printed = tracker._nested = True
        tracker._failed = True  # no "done" line: the error that follows says what happened
        raise
    finally:
        if own_root is not None:
            own_root.stop()
        tracker._close()
        if root_token is not None:
            _ROOT.reset(root_token)
        if own_live is not None:
            own_live.stop()
        if live_token is not None:
            _LIVE.reset(live_token)
        if mode_token is not None:
            _MODE.reset(mode_token)
        _DEPTH.reset(depth_token)
