"""audit_sdk.progress: one reporter for every long step (bars in a terminal, lines in a log, nothing when off)."""

from __future__ import annotations

import threading
import time

import pytest

from audit_sdk.errors import InvalidParameterError
from audit_sdk.progress import progress_enabled, progress_mode, track


def test_off_by_default_in_a_library_call(monkeypatch, capsys):
    monkeypatch.delenv("AUDIT_SDK_PROGRESS", raising=False)
    assert not progress_enabled()
    with track("work", 3) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""


def test_lines_mode_prints_start_figures_and_end(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0")
    with progress_mode("lines"), track("epochs", 2) as bar:
        bar.advance(loss=0.51234, epsilon=None)
        bar.advance(loss=0.25)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "epochs: 0/2 (started)"
    assert lines[1].startswith("epochs: 1/2 (") and lines[1].endswith("loss 0.5123")  # None figures are left out
    assert lines[-1].startswith("epochs: 2/2 (done in") and lines[-1].endswith("loss 0.25")


def test_lines_are_rate_limited(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "3600")
    with progress_mode("lines"), track("steps", 1000) as bar:
        for _ in range(1000):
            bar.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["steps: 0/1000 (started)", lines[-1]] and lines[-1].startswith("steps: 1000/1000 (done in")


def test_a_short_nested_step_stays_quiet_and_a_silent_step_gets_a_heartbeat(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0.2")
    with progress_mode("lines"), track("audit", 1) as outer:
        with track("inner", 2) as inner:
            inner.advance(2)  # done at once: nothing printed for it
        time.sleep(0.7)  # nothing reports: the heartbeat says the step is alive
        outer.advance()
    err = capsys.readouterr().err
    assert "inner" not in err
    assert err.count("audit: 0/1 (") >= 2, err


def test_quiet_wins_over_a_component_asking_for_progress(capsys):
    with progress_mode(False), track("work", 1, enabled=True) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""
    with progress_mode(True):
        assert progress_enabled()


def test_a_tracker_is_an_executor_progress_callback(monkeypatch, capsys):
    from audit_sdk.executor import LocalExecutor

    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0")
    with progress_mode("lines"), track("tasks", 3) as bar, LocalExecutor() as ex:
        assert ex.map(abs, [(-1,), (-2,), (3,)], progress=bar) == [1, 2, 3]
    assert "tasks: 3/3 (done in" in capsys.readouterr().err


def test_modes_are_per_thread(capsys):
    seen = {}

    def other() -> None:
        seen["other"] = progress_enabled()

    with progress_mode("lines"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert progress_enabled()
    assert seen["other"] is False


def test_bad_mode_is_a_typed_error():
    with pytest.raises(InvalidParameterError, match="progress mode must be one of"), progress_mode("loud"):  # type: ignore[arg-type]
        pass


def test_executor_task_that_is_not_a_tuple_is_a_typed_error():
    from audit_sdk.executor import LocalExecutor

    with LocalExecutor() as ex, pytest.raises(InvalidParameterError, match=r"task 0 is a int .* wrap a single argument as \(1,\)"):
        ex.map(abs, [1, 2, 3])  # type: ignore[list-item]
