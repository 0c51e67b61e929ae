"""``AuditReport``: the report model plus the HTML page and the privacy gate.

It sits above ``audit_sdk.gate`` and ``audit_sdk.report`` (which read ``ReportModel``), so the model
stays a leaf and nothing below the pipeline imports upwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import PolicyViolationError
from .gate import evaluate_rules, parse_rules
from .report import render_html
from .report_model import SCHEMA_VERSION, ReportModel, json_default

__all__ = ["SCHEMA_VERSION", "AuditReport", "json_default"]


class AuditReport(ReportModel):
    """Results of an audit, with a table view, JSON (schema_version 1) and a self-contained HTML page.

        report = audit_sdk.run_audit("model.onnx", data, attacks=["mia.loss-threshold"])
        print(report.summary()); report.to_json("out/report.json"); report.to_html("out/report.html")

    The fields are ``ReportModel``'s (see there).
    """

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a self-contained HTML page (plots embedded, no network needed) and return its path.

        Needs matplotlib and jinja2 (default dependencies; ``pip install "audit-sdk[report]"``).
        """
        return render_html([self], path, title=title)

    def check_policy(self, rules: Sequence[str]) -> list[dict[str, Any]]:
        """Check privacy gate rules (``"mia.loss-threshold.auc > 0.6"``) and record the outcomes.

        Raises:
            PolicyViolationError: a rule holds (the policy fails); the outcomes are recorded first.
            InvalidParameterError: a rule is malformed or names an attack or metric not in the report.
        """
        outcomes = evaluate_rules(self, parse_rules(rules))
        self.policy = [o.to_dict() for o in outcomes]
        failed = [o for o in outcomes if o.failed]
        if failed:
            raise PolicyViolationError("; ".join(o.describe() for o in failed))
        return self.policy
