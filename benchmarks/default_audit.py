"""Time the default audit a new user runs first: `audit-sdk audit model.onnx --data data.npz` on the
README's example model (a digits CNN memorising 250 members, as the demo's baseline), with every
attack an ONNX file supports at its default options.

    python benchmarks/default_audit.py [--threads N] [--workers N] [--out DIR]

Prints one line per attack (seconds) and the total; the goal (issue 19) is under 5 minutes on two
busy cores. Measured on the shared 2-core development machine (load average ~10, other jobs
running): 36 s to 109 s in all over two runs (LiRA 21-67 s, the decoder 6-17 s, the rest under 2 s each).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATTACKS = ["mia.loss-threshold", "mia.threshold", "mia.classifier", "mia.lira", "mia.rmia", "mia.label-only", "inversion.decoder"]


def make_example(out: Path) -> None:
    """The README's make_example.py: model.onnx and data.npz in ``out``."""
    import audit_sdk
    from audit_sdk.adapters.torch import export_onnx

    data, _ = audit_sdk.make_audit_data(audit_sdk.load_digits_data(), n_members=250, n_non_members=250, n_population=1000, rng=0)
    audit_sdk.save_npz(data, out / "data.npz")
    result = audit_sdk.train("cnn", data.members.x, data.members.y, defense=None, epochs=60, batch_size=32, lr=2e-3)
    export_onnx(result.model, data.members.x[:2], out / "model.onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, help="passed to audit-sdk audit (default: its own choice)")
    ap.add_argument("--workers", type=int, help="passed to audit-sdk audit")
    ap.add_argument("--out", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="default-audit-"))
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "model.onnx").exists():
        make_example(out)
    cmd = [
        sys.executable,
        "-m",
        "audit_sdk.cli",
        "audit",
        "model.onnx",
        "--data",
        "data.npz",
        "--attacks",
        *ATTACKS,
        "--out",
        "out",
        "--json",
    ]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    cmd += ["--workers", str(args.workers)] if args.workers else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"audit failed ({proc.returncode}): {proc.stderr[-2000:]}")
    import json

    report = json.loads(proc.stdout)
    for a in report["attacks"]:
        print(f"{a['name']:<22} {a['seconds']:8.1f} s")
    print(f"{'total (with start-up)':<22} {total:8.1f} s  (goal: < 300 s on 2 busy cores)")


if __name__ == "__main__":
    main()
