"""Helpers shared by sub-commands."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidParameterError


def split_names(values: list[str] | None) -> list[str]:
    """Accept names space- or comma-separated (``--attacks a,b c``)."""
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def parse_params(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """Parse ``--param NAME.KEY=VALUE`` (VALUE read as JSON when it parses, else as a string).

    NAME is the component name, e.g. ``mia.loss-threshold.calibration=per-class``.
    """
    out: dict[str, dict[str, Any]] = {}
    for raw in pairs or []:
        if "=" not in raw or "." not in raw.split("=", 1)[0]:
            raise InvalidParameterError(f"--param {raw!r}: expected NAME.KEY=VALUE, e.g. mia.loss-threshold.calibration=per-class.")
        lhs, value = raw.split("=", 1)
        comp, key = lhs.rsplit(".", 1)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(comp, {})[key] = parsed
    return out


def add_target_options(p: Any) -> None:
    """``--output``, ``--scores`` and ``--pad-id``: how a model's outputs and inputs are read."""
    p.add_argument(
        "--output",
        metavar="NAME|INDEX",
        help="the model output holding the class scores (default: found from the graph; `audit-sdk inspect MODEL` shows it)",
    )
    p.add_argument("--scores", choices=["logits", "probabilities"], help="what that output holds (default: detected)")
    p.add_argument(
        "--pad-id", type=int, metavar="ID", help="text models: the padding token id; a missing attention_mask is built as input_ids != ID"
    )


def target_options(args: Any) -> dict[str, Any]:
    """The options ``add_target_options`` parsed, those given only."""
    opts = {"output": getattr(args, "output", None), "scores": getattr(args, "scores", None), "pad_token_id": getattr(args, "pad_id", None)}
    return {k: v for k, v in opts.items() if v is not None}
