"""``audit-sdk inspect MODEL [--output NAME|INDEX] [--scores ...] [--data DATA.npz]``.

Prints the model's inputs and outputs and what the SDK would audit: the output holding the class
scores, logits or probabilities, the class count, with the reason. Exit 2, with the graph and a
one-line reason, when it cannot be sure (then ``--output`` / ``--scores`` choose).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import add_target_options, target_options


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="show a model's inputs and outputs and which output the SDK would audit, with the reason",
        description="Show how audit-sdk reads a model: its inputs, its outputs, and the class-score output it would use.",
    )
    p.add_argument("model", help="path to the model (.onnx), or anything an installed adapter recognises")
    add_target_options(p)
    p.add_argument("--data", help="an audit .npz: also check the model against its labels (class count) and inputs")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=run)


def _print_graph(graph: dict[str, Any]) -> None:
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for io in graph.get(kind, []):
            print(f"  {io['name']}: {io['type']} {io['shape']}")


def run(args: argparse.Namespace) -> int:
    from ..errors import AuditSDKError
    from ..run import load_target

    opts = target_options(args)
    data = None
    if args.data:
        from ..data import load_npz

        data = load_npz(args.data)
        opts["label_classes"] = data.n_classes
    try:
        target = load_target(args.model, **opts)
        if data is not None:
            target.check_input(data.members.x[:1])
            target.check_labels(data.members.y)
    except AuditSDKError as exc:
        graph = getattr(exc, "details", None)
        if graph and not args.json:
            _print_graph(graph)
        raise
    d = target.describe()
    if args.json:
        sys.stdout.write(json.dumps(d, indent=2, default=str) + "\n")
        return 0
    if "graph" in d:
        _print_graph(d["graph"])
    print(f"class scores: output {d.get('output', '?')!r} ({d.get('selection', 'given')})")
    print(
        f"reads: {d.get('outputs', 'probabilities')} over {d.get('n_classes')} classes"
        + (f", labels {d['class_labels']}" if "class_labels" in d else "")
    )
    if d.get("fixed_batch"):
        print(f"batch: fixed at {d['fixed_batch']} rows per run (the last chunk padded)")
    if d.get("input_names"):
        print(f"named inputs: {d['input_names']} (pad id: {d.get('pad_token_id')})")
    if d.get("model_family"):
        print(f"model family: {d['model_family']}")
    return 0
