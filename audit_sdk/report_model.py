"""The report model: what an audit produced, as data (a leaf of the core).

``ReportModel`` holds the results of one audit and serialises them (report.json, a text table);
``json_default`` and ``format_table`` are the one JSON encoder and the one text-table printer of
the SDK. The gate (``audit_sdk.gate``) and the HTML page (``audit_sdk.report``) read this model;
``audit_sdk.AuditReport`` (``audit_sdk.audit_report``) adds their two methods on top, so nothing
here imports the pipeline, the gate or the renderer.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import fileio
from .results import AttackResult
from .version import __version__, versions

__all__ = ["SCHEMA_VERSION", "ReportModel", "format_table", "format_value", "json_default", "versions"]

#: Version of the report.json schema.
SCHEMA_VERSION = 1


def json_default(o: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, and paths, as JSON."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_value(v: Any) -> str:
    """One cell of a text table: floats to 4 decimals (4 significant digits when large), None as ''."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def format_table(rows: Iterable[Mapping[str, Any]], *, empty: str = "(no rows)") -> str:
    """A plain-text table of ``rows`` (dicts), columns in first-seen order, a dashed rule under the header."""
    rows = list(rows)
    if not rows:
        return empty
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    cells = [[c] + [format_value(r.get(c)) for r in rows] for c in cols]
    widths = [max(len(v) for v in col) for col in cells]
    lines = ["  ".join(col[i].ljust(w) for col, w in zip(cells, widths)).rstrip() for i in range(len(rows) + 1)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class ReportModel:
    """The results of an audit as data: a table view and JSON (schema_version 1).

    ``audit_sdk.AuditReport`` (what ``run_audit`` returns) adds the HTML page and the policy gate,
    which live above this module; the gate and the HTML renderer read this model.

    Attributes:
        target, data: JSON-able descriptions of the model and the audit data.
        results: one AttackResult per attack, in the order run.
        privacy: figures of the DP training run the model came from (e.g. ``{"epsilon": 3.0,
            "delta": 1e-5, "accountant": "acct.rdp"}``), shown beside the empirical lower bounds.
        sections: extra report sections from the ``report_sections`` hook.
        config: the audit config that produced the report (JSON-able), when one was used.
        timings: seconds per phase (``load_target``, each attack by name, ``total``).
        policy: outcomes of the privacy gate rules checked against this report.
        label: a short name for the audited model (a grid cell's label).
        failures: attacks that raised (``run_audit(..., on_attack_error="record")``), each
            ``{"name", "params", "status": "failed", "error", "error_type", "input_error"}``.
        notes: what the run noticed and assumed (e.g. too few samples to measure).
    """

    target: dict[str, Any]
    data: dict[str, Any]
    results: list[AttackResult]
    seed: int | None = None
    seconds: float = 0.0
    privacy: dict[str, Any] | None = None
    sections: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    policy: list[dict[str, Any]] = field(default_factory=list)
    label: str | None = None
    utility: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list, repr=False)

    def theoretical_epsilon(self) -> float | None:
        """The accountant's epsilon from ``privacy`` (the smallest one reported), or None without DP.

        Looks for a numeric ``epsilon`` at the top of ``privacy`` or in nested dicts (one per
        defense or accountant); every accountant's figure is a valid upper bound, so the
        tightest is reported.
        """
        found: list[float] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                v = node.get("epsilon")
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                    found.append(float(v))
                for child in node.values():
                    if isinstance(child, dict):
                        walk(child)

        walk(self.privacy or {})
        return min(found) if found else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "audit_sdk_version": __version__,
            "python": platform.python_version(),
            "seed": self.seed,
            "seconds": round(self.seconds, 4),
            "target": self.target,
            "data": {k: self.data[k] for k in ("members", "non_members", "population") if k in self.data} | self.data,
            "privacy": self.privacy,
            "attacks": self._attack_entries(),
            "failed_attacks": [f["name"] for f in self.failures],
            "notes": self.notes,
            "sections": [{k: v for k, v in s.items() if k != "html"} for s in self.sections],
            "label": self.label,
            "utility": self.utility,
            "config": self.config,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "policy": self.policy,
            "versions": versions(),
        }

    def _attack_entries(self) -> list[dict[str, Any]]:
        """Every attack in the order run: results (``status: ok``) and failures (``status: failed``)."""
        ok = [{**r.to_dict(), "status": "ok"} for r in self.results]
        if not self.failures:
            return ok
        if len(self.order) != len(ok) + len(self.failures):
            return ok + list(self.failures)
        oks, fails = iter(ok), iter(self.failures)
        return [next(fails) if kind == "failed" else next(oks) for kind in self.order]

    def to_json(self, path: str | Path) -> Path:
        """Write report.json (schema ``SCHEMA_VERSION``) atomically and return its path."""
        return fileio.write_text_atomic(path, json.dumps(self.to_dict(), indent=2, default=json_default))

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.results:
            m = r.metrics
            if r.kind == "membership":
                rows.append(
                    {
                        "attack": r.attack,
                        "auc": m["auc"],
                        "advantage": m["advantage"],
                        "tpr@0.1%": m["tpr_at_fpr"]["0.001"],
                        "tpr@1%": m["tpr_at_fpr"]["0.01"],
                        "eps_lb": m["epsilon_lower_bound"],
                        "seconds": r.seconds,
                    }
                )
            else:
                rows.append({"attack": r.attack, "ssim": m["ssim"], "psnr": m["psnr"], "rel_l2": m["relative_l2"], "seconds": r.seconds})
        return rows

    def summary(self) -> str:
        """A plain-text table of the headline metrics, one row per attack."""
        return format_table(self.rows(), empty="(no attacks run)")
