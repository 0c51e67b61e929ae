"""Streaming scores from memory-mapped / zipped arrays: same numbers as in-memory scoring, bounded memory, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.streaming import NpyStream, iter_batches, open_array, stream_scores
from audit_sdk.target import Target


class LinearTarget(Target):
    """A tiny logits model in numpy: z = x @ W + b."""

    capabilities = frozenset({"labels", "probabilities", "logits"})

    def __init__(self, d: int, k: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(d, k)).astype(np.float32)
        self.b = rng.normal(size=k).astype(np.float32)
        self.input_shape = (d,)
        self.n_classes = k
        self.batch_size = 100
        self.rows_seen = 0

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        self.rows_seen += len(x)
        return x @ self.w + self.b


@pytest.fixture
def data(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(1037, 6)).astype(np.float32), rng.integers(0, 4, size=1037)


@pytest.mark.parametrize("score", ["loss", "confidence", "true-class-proba"])
def test_streamed_scores_equal_in_memory_scores(tmp_path: Path, data, score: str) -> None:
    x, y = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    t = LinearTarget(6, 4)
    res = stream_scores(t, tmp_path / "x.npy", tmp_path / "y.npy", out_path=tmp_path / "s.npy", batch_size=128, score=score)
    p = t.predict_proba(x)
    expected = {"loss": t.loss(x, y), "confidence": p.max(1), "true-class-proba": p[np.arange(len(y)), y]}[score]
    got = np.load(tmp_path / "s.npy", allow_pickle=False)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert res.n == 1037 and res.batches == 9 and res.load().shape == (1037,)


def test_npz_members_stored_are_mapped_and_compressed_are_streamed(tmp_path: Path, data) -> None:
    x, y = data
    np.savez(tmp_path / "plain.npz", x_members=x, y_members=y)
    np.savez_compressed(tmp_path / "packed.npz", x_members=x, y_members=y)
    xm = open_array(tmp_path / "plain.npz", "x_members")
    assert isinstance(xm, np.memmap)
    np.testing.assert_array_equal(xm, x)
    xs = open_array(tmp_path / "packed.npz", "x_members.npy")
    assert isinstance(xs, NpyStream) and xs.shape == x.shape and len(xs) == 1037
    rows = np.concatenate([b for _, b in iter_batches(xs, 300)])
    np.testing.assert_array_equal(rows, x)
    t = LinearTarget(6, 4)
    a = stream_scores(t, xm, open_array(tmp_path / "plain.npz", "y_members"), out_path=tmp_path / "a.npy", batch_size=200)
    b = stream_scores(t, xs, open_array(tmp_path / "packed.npz", "y_members"), out_path=tmp_path / "b.npy", batch_size=200)
    np.testing.assert_array_equal(a.load(), b.load())
    np.testing.assert_allclose(a.load(), t.loss(x, y), rtol=1e-12)


def test_interrupted_run_resumes_without_rescoring(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audit_sdk.streaming.CHECKPOINT_SECONDS", 0.0)  # checkpoint after every batch
    x, y = data
    t = LinearTarget(6, 4)
    calls: list[int] = []
    crash_at = [4]

    def flaky_loss(target, xb, yb):
        calls.append(len(xb))
        if len(calls) == crash_at[0]:
            raise RuntimeError("simulated crash")
        return target.loss(xb, yb)

    out = tmp_path / "s.npy"
    with pytest.raises(RuntimeError, match="simulated crash"):
        stream_scores(t, x, y, out_path=out, batch_size=100, score=flaky_loss)
    state = json.loads((tmp_path / "s.npy.progress.json").read_text())
    assert state["done"] == 300 and state["n"] == 1037
    calls.clear()

    def counted_loss(target, xb, yb):
        calls.append(len(xb))
        return target.loss(xb, yb)

    res = stream_scores(t, x, y, out_path=out, batch_size=100, score=counted_loss, resume=True)
    # another score function is another score: the run starts over
    assert res.resumed_from == 0 and sum(calls) == 1037
    calls.clear()
    with pytest.raises(RuntimeError):
        stream_scores(t, x, y, out_path=out, batch_size=100, score=flaky_loss)
    calls.clear()
    crash_at[0] = -1
    res = stream_scores(t, x, y, out_path=out, batch_size=100, score=flaky_loss, resume=True)
    assert res.resumed_from == 300 and sum(calls) == 1037 - 300
    np.testing.assert_allclose(res.load(), t.loss(x, y), rtol=1e-12)


def test_compressed_stream_resumes_mid_file(tmp_path: Path, data) -> None:
    x, y = data
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    xs, ys = open_array(tmp_path / "d.npz", "x"), open_array(tmp_path / "d.npz", "y")
    got = np.concatenate([b for _, b in iter_batches(xs, 64, start=500)])
    np.testing.assert_array_equal(got, x[500:])
    firsts = [i for i, _ in iter_batches(ys, 300, start=100)]
    assert firsts == [100, 400, 700, 1000]


def test_errors_name_the_problem(tmp_path: Path, data) -> None:
    x, y = data
    t = LinearTarget(6, 4)
    with pytest.raises(InvalidDataError, match="1037 inputs but 10 labels"):
        stream_scores(t, x, y[:10], out_path=tmp_path / "s.npy")
    with pytest.raises(InvalidParameterError, match="unknown score 'auc'"):
        stream_scores(t, x, y, out_path=tmp_path / "s.npy", score="auc")
    with pytest.raises(InvalidDataError, match=r"returned shape \(3,\)"):
        stream_scores(t, x, y, out_path=tmp_path / "s.npy", score=lambda *_: np.zeros(3))
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(InvalidDataError, match=r"no array 'nope'; it holds \['x'\]"):
        open_array(tmp_path / "d.npz", "nope")
    with pytest.raises(InvalidParameterError, match="name the array"):
        open_array(tmp_path / "d.npz")
    with pytest.raises(InvalidDataError, match="does not exist"):
        open_array(tmp_path / "missing.npy")
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidDataError, match="cannot be memory-mapped"):
        open_array(tmp_path / "obj.npy")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc (Linux)")
def test_memory_stays_bounded_by_the_batch(tmp_path: Path) -> None:
    """Stream 160 MB of inputs in a fresh process: peak RSS grows by far less than the data."""
    n, d = 320_000, 128  # 160 MiB of float32
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(n, d))
    x[:] = 0.5
    x.flush()
    del x
    np.save(tmp_path / "y.npy", np.zeros(n, dtype=np.int64))
    script = textwrap.dedent(
        f"""
        import numpy as np
        from audit_sdk.streaming import stream_scores, open_array
        from audit_sdk.target import Target

        class T(Target):
            capabilities = frozenset({{"labels", "probabilities", "logits"}})
            input_shape = ({d},); n_classes = 3; batch_size = 4096
            w = np.ones(({d}, 3), dtype=np.float32)
            def _predict_raw(self, x):
                return x @ self.w

        def hwm():  # peak RSS of this process (ru_maxrss would inherit the parent's peak)
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))

        before = hwm()
        res = stream_scores(T(), open_array(r"{tmp_path / "x.npy"}"), r"{tmp_path / "y.npy"}",
                            out_path=r"{tmp_path / "s.npy"}", batch_size=4096)
        after = hwm()
        print((after - before) // 1024, float(res.load()[-1]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grew_mib, last = out.stdout.split()
    assert abs(float(last) - np.log(3)) < 1e-6  # equal logits: loss log(3)
    assert int(grew_mib) < 48, f"peak RSS grew by {grew_mib} MiB while streaming 160 MiB"


def test_stream_membership_catches_planted_leakage_like_in_memory_metrics(tmp_path: Path) -> None:
    from audit_sdk.metrics import membership_metrics
    from audit_sdk.streaming import stream_membership

    t = LinearTarget(6, 4, seed=3)
    rng = np.random.default_rng(4)
    xm = rng.normal(size=(600, 6)).astype(np.float32) * 3
    ym = t.predict_labels(xm)  # members: the model "fits" their labels (low loss)
    xn = rng.normal(size=(500, 6)).astype(np.float32) * 3
    yn = rng.integers(0, 4, size=500)  # non-members: labels the model mostly gets wrong
    np.save(tmp_path / "xm.npy", xm)
    res = stream_membership(t, (tmp_path / "xm.npy", ym), (xn, yn), out_dir=tmp_path / "scores", batch_size=128)
    expected = membership_metrics(np.r_[-t.loss(xm, ym), -t.loss(xn, yn)], np.r_[np.ones(600, bool), np.zeros(500, bool)])
    assert res.attack == "streaming.loss" and res.extra["n_members"] == 600
    assert res.metrics["auc"] == pytest.approx(expected["auc"], abs=1e-12)
    assert res.metrics["auc"] > 0.7  # planted: members have lower loss
    assert (tmp_path / "scores" / "non_members_loss.npy").is_file()
    with pytest.raises(InvalidParameterError, match="higher_is_member"):
        stream_membership(t, (xm, ym), (xn, yn), out_dir=tmp_path / "s2", score=lambda tg, x, y: tg.loss(x, y))


def test_checkpoints_are_throttled_and_unrecorded_rows_are_rescored(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audit_sdk.streaming.CHECKPOINT_SECONDS", 1e9)  # only the final checkpoint
    x, y = data
    t = LinearTarget(6, 4)
    n_calls = [0]

    def crash_on_fifth(target, xb, yb):
        n_calls[0] += 1
        if n_calls[0] == 5:
            raise RuntimeError("crash")
        return target.loss(xb, yb)

    out = tmp_path / "s.npy"
    with pytest.raises(RuntimeError):
        stream_scores(t, x, y, out_path=out, batch_size=100, score=crash_on_fifth)
    assert json.loads((tmp_path / "s.npy.progress.json").read_text())["done"] == 0  # 4 batches scored, none recorded
    res = stream_scores(t, x, y, out_path=out, batch_size=100, score=crash_on_fifth, resume=True)
    assert res.resumed_from == 0 and res.batches == 11
    assert json.loads((tmp_path / "s.npy.progress.json").read_text())["done"] == 1037
    np.testing.assert_allclose(res.load(), t.loss(x, y), rtol=1e-12)
