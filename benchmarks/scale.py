"""Scale benchmark: fan-out speedup, bounded-memory scoring, per-reference costs.

    python benchmarks/scale.py                 # all three parts (about 2-3 minutes on 2 cores)
    python benchmarks/scale.py --ray           # also time the Ray backend
    python benchmarks/scale.py --part memory --rows 1000000

Parts (each prints a table):

1. ``speedup``: reference-model-like training (a small CNN per task, the torch adapter's Trainer,
   one torch thread per worker) run inline with 1 worker, then on a 2-process ``LocalExecutor``
   (cold: including starting the pool; warm: pool started and torch imported beforehand), and
   optionally on a local 2-CPU Ray, in interleaved rounds (best round kept). All backends must
   return identical weights. A calibration row per round runs a pure-CPU loop once inline and
   twice at once on the pool: its ratio is the parallelism the machine actually offered (other
   processes on the cores lower it).
2. ``memory``: peak RSS (VmHWM) of a fresh process auditing ``--rows`` synthetic examples (half
   members, half non-members) with an ONNX model: streamed from a memory-mapped ``.npy``
   (``audit_sdk.streaming.stream_membership``: per-example losses written to disk batch by batch,
   then the core metrics) vs loaded into memory and scored with ``Target.loss``.
3. ``reference``: measured cost of one CIFAR-10-shaped reference model (the adapter's default CNN
   on 3x32x32 inputs, one thread): seconds per 1,000 training examples per epoch, and seconds
   per 1,000 scored examples. ``docs/scale.md`` projects a 256-reference LiRA audit from these.

Other processes on the machine skew the timings; the table prints the load average at the start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- tasks (module-level: workers import them)
def train_reference(seed: int, n: int, epochs: int) -> dict:
    """Train one small CNN on seeded synthetic 1x16x16 data; return its weights' summary."""
    import torch

    torch.set_num_threads(1)
    from audit_sdk.adapters.torch import Trainer, make_model

    c0, w0 = time.process_time(), time.time()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    model = make_model("cnn", input_shape=(1, 16, 16), n_classes=10, seed=seed)
    result = Trainer({"epochs": epochs, "batch_size": 64, "device": "cpu", "seed": seed}).fit(model, x, y)
    flat = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    return {
        "seed": seed,
        "loss": float(result.history[-1]["loss"]),
        "weights_sum": float(flat.sum()),
        "pid": os.getpid(),
        "cpu_s": time.process_time() - c0,
        "span": (w0, time.time()),  # wall-clock start and end: comparable across processes
    }


def spin(n: int) -> float:
    """Pure CPU work (no memory traffic, no libraries): calibrates how much parallelism the machine gives."""
    x = 0
    for i in range(n):
        x += i * i
    return float(x % 7)


def noop(i: int) -> int:
    return i


def warm_up(_: int) -> int:
    import torch

    torch.set_num_threads(1)
    time.sleep(0.2)  # keep each worker busy so both pick one up
    return os.getpid()


# --------------------------------------------------------------------------- helpers
def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def _concurrency(results: list[dict]) -> float:
    """Mean number of tasks running at once: total task time / makespan (2.0 = both workers always busy)."""
    spans = [r["span"] for r in results]
    return sum(e - s for s, e in spans) / (max(e for _, e in spans) - min(s for s, _ in spans))


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(x["loss"] == y["loss"] and x["weights_sum"] == y["weights_sum"] for x, y in zip(a, b))


# --------------------------------------------------------------------------- part 1
def part_speedup(args: argparse.Namespace) -> None:
    import torch

    from audit_sdk.executors import LocalExecutor

    torch.set_num_threads(1)
    tasks = [(s, args.ref_rows, args.ref_epochs) for s in range(args.tasks)]
    n_spin = 6_000_000

    def timed(fn, *a):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn(*a)
        return time.perf_counter() - t0, out

    # Cold start, once: a fresh pool pays process start and imports.
    with LocalExecutor(2, threads_per_worker=1) as ex:
        t_cold, cold = timed(ex.map, train_reference, tasks)
    rex = None
    t_start = 0.0
    if args.ray:
        import ray

        from audit_sdk.executors.ray_backend import RayExecutor

        t_start, _ = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
        rex = RayExecutor()
        rex.map(warm_up, [(i,) for i in range(2)])
    # Other processes' load comes and goes, so the backends are timed in interleaved rounds and
    # each keeps its best round (the least disturbed one). The calibration runs a pure-CPU loop
    # once inline and twice at once on the pool: 2 * t(one) / t(two at once) is the parallelism
    # the machine offered in that round (2.0 on two idle cores).
    best: dict[str, float] = {}
    outs: dict[str, list] = {}
    caps: list[float] = []
    with LocalExecutor(2, threads_per_worker=1) as ex:
        ex.map(warm_up, [(i,) for i in range(2)])
        for _ in range(args.rounds):
            for name, run in [
                ("inline", lambda: LocalExecutor(1).map(train_reference, tasks)),
                ("pool", lambda: ex.map(train_reference, tasks)),
                *([("ray", lambda: rex.map(train_reference, tasks))] if rex is not None else []),
            ]:
                dt, out = timed(run)
                outs[name] = out
                best[name] = min(best.get(name, float("inf")), dt)
            t_one, _ = timed(spin, n_spin)
            t_two, _ = timed(ex.map, spin, [(n_spin,), (n_spin,)])
            caps.append(2 * t_one / t_two)
    serial = outs["inline"]
    t_serial = best["inline"]
    rows = [
        ["local, 1 worker (inline)", f"{t_serial:.2f}", "1.00", "yes", f"{_concurrency(serial):.2f}"],
        [
            "local, 2 workers, cold (one run, pool start incl.)",
            f"{t_cold:.2f}",
            f"{t_serial / t_cold:.2f}",
            "yes" if _same(serial, cold) else "NO",
            f"{_concurrency(cold):.2f}",
        ],
        [
            "local, 2 workers, warm",
            f"{best['pool']:.2f}",
            f"{t_serial / best['pool']:.2f}",
            "yes" if _same(serial, outs["pool"]) else "NO",
            f"{_concurrency(outs['pool']):.2f}",
        ],
    ]
    if rex is not None:
        import ray

        t_overhead, _ = timed(rex.map, noop, [(i,) for i in range(200)])
        rex.close()
        ray.shutdown()
        rows.append(
            [
                f"ray, 2 CPUs, warm (ray.init {t_start:.1f} s once)",
                f"{best['ray']:.2f}",
                f"{t_serial / best['ray']:.2f}",
                "yes" if _same(serial, outs["ray"]) else "NO",
                f"{_concurrency(outs['ray']):.2f}",
            ]
        )
        rows.append([f"ray, per-task overhead (200 empty tasks, {t_overhead / 200 * 1000:.1f} ms each)", "", "", "", ""])
    rows.append(["calibration: machine parallel capacity per round", "", " ".join(f"{c:.2f}" for c in caps), "", ""])
    _table(
        f"1. reference-model training: {args.tasks} tasks x (CNN 1x16x16, {args.ref_rows} rows, {args.ref_epochs} epochs), "
        f"1 torch thread per worker, best of {args.rounds} interleaved rounds",
        ["backend", "wall s", "speedup", "same weights", "tasks running at once"],
        rows,
    )
    cpu = sum(r["cpu_s"] for r in serial)
    print(
        f"   per task (inline, last round): {cpu / args.tasks:.2f} s CPU; goal: warm 2-worker speedup >= 1.6 "
        f"(reachable only when the capacity row reads near 2.0)"
    )


# --------------------------------------------------------------------------- part 2
_SCORE_CHILD = r"""
import sys, time, numpy as np
mode, model, xp, yp, out, bs = sys.argv[1:7]
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
from audit_sdk.adapters.onnx import OnnxTarget
from audit_sdk.metrics import membership_metrics
from audit_sdk.streaming import open_array, stream_membership, stream_scores
target = OnnxTarget(model, batch_size=int(bs), intra_op_threads=1)
t0 = time.perf_counter()
if mode == "stream, scores only":
    x, y = open_array(xp), open_array(yp)
    res = stream_scores(target, x, y, out_path=out + "/all.npy", batch_size=int(bs))
    auc = float("nan")
elif mode == "stream + metrics":
    x, y = open_array(xp), open_array(yp)
    half = len(y) // 2  # first half members, second half non-members
    res = stream_membership(target, (x[:half], y[:half]), (x[half:], y[half:]), out_dir=out, batch_size=int(bs))
    auc = res.metrics["auc"]
else:
    x, y = np.load(xp), np.load(yp)
    half = len(y) // 2
    loss = target.loss(x, y)
    auc = membership_metrics(-loss, np.arange(len(y)) < half)["auc"]
dt = time.perf_counter() - t0
print(f"{hwm():.1f} {dt:.3f} {auc:.12f} {len(y)}")
"""


def _linear_mlp_onnx(path: Path, d: int, hidden: int, k: int) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.normal(size=(d, hidden)) / np.sqrt(d)).astype(np.float32)
    w2 = (rng.normal(size=(hidden, k)) / np.sqrt(hidden)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", k])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def part_memory(args: argparse.Namespace) -> None:
    n, d = args.rows, args.features
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        xp, yp, model = tmp / "x.npy", tmp / "y.npy", tmp / "mlp.onnx"
        x = np.lib.format.open_memmap(xp, mode="w+", dtype=np.float32, shape=(n, d))
        rng = np.random.default_rng(0)
        for i in range(0, n, 100_000):  # written in chunks: the generator itself stays small
            x[i : i + 100_000] = rng.normal(size=(min(100_000, n - i), d)).astype(np.float32)
        x.flush()
        del x
        np.save(yp, rng.integers(0, 10, size=n))
        _linear_mlp_onnx(model, d, 64, 10)
        rows = []
        aucs: list[float] = []
        for mode in ("stream, scores only", "stream + metrics", "in-memory + metrics"):
            out = subprocess.run(
                [sys.executable, "-c", _SCORE_CHILD, mode, str(model), str(xp), str(yp), str(tmp / f"s-{mode}"), str(args.batch)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                rows.append([mode, "failed", "", out.stderr.strip().splitlines()[-1][:60]])
                continue
            peak, secs, auc, count = out.stdout.split()
            if auc != "nan":
                aucs.append(float(auc))
            rows.append([mode, f"{float(peak):.0f}", f"{float(secs):.1f}", f"{int(count) / float(secs):,.0f}"])
    data_mib = n * d * 4 / 2**20
    _table(
        f"2. peak RSS scoring {n:,} examples x {d} float32 features ({data_mib:.0f} MiB) with an ONNX MLP, batch {args.batch}",
        ["mode", "peak RSS MiB", "seconds", "rows/s"],
        rows,
    )
    agree = len(aucs) == 2 and abs(aucs[0] - aucs[1]) < 1e-9
    print(
        f"   a loss-based membership audit (first half members): AUC {aucs[0] if aucs else float('nan'):.4f} in both modes: "
        f"{'yes' if agree else 'NO'}; goal: streaming peak RSS < 1024 MiB"
    )


# --------------------------------------------------------------------------- part 3
def part_reference(args: argparse.Namespace) -> None:
    import torch

    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
    from audit_sdk.adapters.torch._util import resolve_device

    torch.set_num_threads(1)
    dev = resolve_device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rng = np.random.default_rng(0)
    n = args.cifar_rows
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    model = make_model("cnn", input_shape=(3, 32, 32), n_classes=10, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=128, device=str(dev), seed=0)
    Trainer(cfg).fit(model, x[:256], y[:256])  # warm-up (allocator, kernels)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    Trainer(cfg).fit(model, x, y)
    sync()
    t_train, c_train = (time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000
    model.eval()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for i in range(0, n, 256):
            model(torch.from_numpy(x[i : i + 256]).to(dev)).cpu()
    sync()
    t_score, c_score = (time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000
    params = sum(p.numel() for p in model.parameters())
    # CPU seconds do not grow when other processes share the cores; wall seconds do.
    _table(
        f"3. per-reference cost, CIFAR-10-shaped (3x32x32), adapter CNN ({params:,} parameters), device {dev}, 1 CPU thread, {n} examples",
        ["quantity", "wall s", "CPU s"],
        [
            ["train, per 1,000 examples per epoch", f"{t_train:.3f}", f"{c_train:.3f}"],
            ["score (forward), per 1,000 examples", f"{t_score:.3f}", f"{c_score:.3f}"],
            [
                "one reference: 25,000 examples x 10 epochs + scoring 60,000",
                f"{t_train * 250 + t_score * 60:.1f}",
                f"{c_train * 250 + c_score * 60:.1f}",
            ],
        ],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "speedup", "memory", "reference"], default="all")
    ap.add_argument("--tasks", type=int, default=8, help="reference models in part 1")
    ap.add_argument("--ref-rows", type=int, default=1024)
    ap.add_argument("--ref-epochs", type=int, default=8)
    ap.add_argument("--ray", action="store_true", help="also time the Ray backend (local, 2 CPUs)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds in part 1 (best kept)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="examples scored in part 2")
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--cifar-rows", type=int, default=3000, help="examples timed in part 3")
    ap.add_argument("--device", default="cpu", help="part 3 device: cpu, cuda or auto (measure a GPU's per-reference cost)")
    args = ap.parse_args(argv)
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"audit-sdk scale benchmark: {os.cpu_count()} CPUs, load average {' '.join(load)}, python {sys.version.split()[0]}")
    if args.part in ("all", "speedup"):
        part_speedup(args)
    if args.part in ("all", "memory"):
        part_memory(args)
    if args.part in ("all", "reference"):
        part_reference(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
