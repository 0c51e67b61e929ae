"""The CI privacy gate: rules such as ``mia.lira.tpr_at_fpr.0.01 > 0.05`` checked against a report.

A rule states the condition under which the release is blocked::

    RULE   := PATH OP NUMBER
    PATH   := ATTACK "." METRIC          e.g. mia.loss-threshold.tpr_at_fpr.0.01
            | "*" "." METRIC             every attack that reports METRIC
            | "privacy" "." KEY          a figure of the DP training run, e.g. privacy.epsilon
    OP     := ">" | ">=" | "<" | "<=" | "==" | "!="
    NUMBER := a decimal or scientific literal, e.g. 0.05, 1e-3

Rules are parsed with a regular expression, never evaluated as code. ``ATTACK`` is matched against
the names of the attacks that ran (the longest name that prefixes the path wins, since both
attack names and metric keys such as ``0.01`` contain dots); the rest is looked up in the
attack's metrics (then ``seconds`` and ``extra``).

    rules = parse_rules(["mia.loss-threshold.auc > 0.6"])
    check_policy(report, rules)          # raises PolicyViolationError naming the failing rule
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidParameterError, PolicyViolationError

if TYPE_CHECKING:
    from .report_model import ReportModel

__all__ = ["Rule", "RuleOutcome", "check_policy", "evaluate_rules", "parse_rule", "parse_rules", "validate_rule_targets"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE_RE = re.compile(
    r"^\s*(?P<path>[A-Za-z0-9_*][A-Za-z0-9_.\-*]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Rule:
    """A parsed rule: fail when ``value(path) op threshold``."""

    text: str
    path: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return self.text

    def holds(self, value: float) -> bool:
        """True when ``value`` triggers the rule (the policy fails)."""
        return bool(_OPS[self.op](value, self.threshold))


@dataclass(frozen=True)
class RuleOutcome:
    """One rule applied to one attack result (or to the privacy figures)."""

    rule: Rule
    subject: str
    metric: str
    value: float
    failed: bool

    def describe(self) -> str:
        return describe_outcome(self.to_dict() | {"op": self.rule.op, "threshold": self.rule.threshold})

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.text, "subject": self.subject, "metric": self.metric, "value": self.value, "failed": self.failed}


def describe_outcome(outcome: dict[str, Any]) -> str:
    """One unambiguous line for a rule's outcome: the value, then the condition that blocks.

    ``FAILED: mia.lira tpr_at_fpr.0.01 = 0.124, and the rule blocks when > 0.05 ('mia.lira.tpr_at_fpr.0.01 > 0.05')``
    ``passed: mia.lira tpr_at_fpr.0.01 = 0.024; the rule blocks only when > 0.05 ('...')``
    """
    rule = str(outcome["rule"])
    op, threshold = outcome.get("op"), outcome.get("threshold")
    if op is None or threshold is None:
        parsed = parse_rule(rule)
        op, threshold = parsed.op, parsed.threshold
    value = f"{outcome['subject']} {outcome['metric']} = {float(outcome['value']):.6g}"
    if outcome["failed"]:
        return f"FAILED: {value}, and the rule blocks when {op} {threshold:g} ('{rule}')"
    return f"passed: {value}; the rule blocks only when {op} {threshold:g} ('{rule}')"


def parse_rule(text: str) -> Rule:
    """Parse one rule.

    Raises:
        InvalidParameterError: the text is not ``PATH OP NUMBER``.
    """
    if not isinstance(text, str):
        raise InvalidParameterError(f"a --fail-on rule must be a string like 'mia.loss-threshold.auc > 0.6'; got {text!r}.")
    m = _RULE_RE.match(text)
    if m is None:
        raise InvalidParameterError(
            f"cannot parse the rule {text!r}; expected 'ATTACK.METRIC OP NUMBER' with OP one of "
            "> >= < <= == !=, e.g. 'mia.loss-threshold.tpr_at_fpr.0.01 > 0.05'."
        )
    path = m["path"].strip(".")
    if "." not in path:
        raise InvalidParameterError(f"rule {text!r}: the path {path!r} names no metric; write ATTACK.METRIC, e.g. mia.loss-threshold.auc.")
    threshold = float(m["num"])
    if not math.isfinite(threshold):
        raise InvalidParameterError(f"rule {text!r}: the threshold must be a finite number.")
    return Rule(text=" ".join(text.split()), path=path, op=m["op"], threshold=threshold)


def parse_rules(texts: Iterable[str] | None) -> list[Rule]:
    """Parse every rule, reporting all malformed ones at once."""
    rules: list[Rule] = []
    problems: list[str] = []
    for t in texts or []:
        try:
            rules.append(parse_rule(t))
        except InvalidParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise InvalidParameterError(" ".join(problems))
    return rules


def _split_subject(path: str, names: Sequence[str]) -> tuple[str, str] | None:
    """Split ``path`` into (attack name, metric path) using the longest matching attack name."""
    if path.startswith("*."):
        return "*", path[2:]
    if path.startswith("privacy."):
        return "privacy", path[len("privacy.") :]
    best = None
    for n in names:
        if path.startswith(n + ".") and (best is None or len(n) > len(best)):
            best = n
    if best is None:
        # Accept a bare attack name ("loss-threshold.auc") when it is unambiguous.
        tails = {n.split(".", 1)[-1]: n for n in names}
        for tail, n in tails.items():
            if path.startswith(tail + ".") and (best is None or len(n) > len(best)):
                best = n
        if best is not None:
            return best, path[len(best.split(".", 1)[-1]) + 1 :]
        return None
    return best, path[len(best) + 1 :]


def validate_rule_targets(rules: Sequence[Rule], attack_names: Sequence[str]) -> None:
    """Check, before anything runs, that every rule names an attack that will run.

    Raises:
        InvalidParameterError: a rule names an attack that is not in ``attack_names``.
    """
    problems = []
    for r in rules:
        if _split_subject(r.path, attack_names) is None:
            problems.append(
                f"rule {r.text!r} names an attack that is not run (attacks run: {', '.join(attack_names) or 'none'}); "
                "add the attack or fix the rule"
            )
    if problems:
        raise InvalidParameterError("; ".join(problems) + ".")


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    """Resolve a dotted path in nested dicts whose keys may themselves contain dots ("0.01")."""
    parts = path.split(".")
    node: Any = tree
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            raise KeyError(path)
        for j in range(len(parts), i, -1):  # longest key first
            key = ".".join(parts[i:j])
            if key in node:
                node = node[key]
                i = j
                break
        else:
            raise KeyError(path)
    return node


def _leaf_paths(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        p = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out += _leaf_paths(v, p + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(p)
    return out


def _as_number(value: Any, rule: Rule, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameterError(f"rule {rule.text!r}: {where} is {value!r}, not a number; point the rule at a numeric metric.")
    return float(value)


def evaluate_rules(report: ReportModel, rules: Sequence[Rule]) -> list[RuleOutcome]:
    """Apply each rule to the report.

    Raises:
        InvalidParameterError: a rule names an attack or metric the report does not hold
            (a usage error: the policy cannot be checked).
    """
    results = report.results
    names = list(dict.fromkeys(r.attack for r in results))
    outcomes: list[RuleOutcome] = []
    for rule in rules:
        split = _split_subject(rule.path, names)
        if split is None:
            raise InvalidParameterError(f"rule {rule.text!r} names an attack that was not run (attacks run: {', '.join(names) or 'none'}).")
        subject, metric = split
        if subject == "privacy":
            if not report.privacy:
                raise InvalidParameterError(
                    f"rule {rule.text!r}: the report has no privacy figures (pass privacy= from a DP training run)."
                )
            try:
                value = _lookup(report.privacy, metric)
            except KeyError:
                raise InvalidParameterError(
                    f"rule {rule.text!r}: no privacy figure {metric!r}; available: {', '.join(_leaf_paths(report.privacy)) or 'none'}."
                ) from None
            v = _as_number(value, rule, f"privacy.{metric}")
            outcomes.append(RuleOutcome(rule, "privacy", metric, v, rule.holds(v)))
            continue
        matched = [r for r in results if subject in ("*", r.attack)]
        found = False
        for r in matched:
            tree = {**r.metrics, "seconds": r.seconds, "extra": r.extra}
            try:
                value = _lookup(tree, metric)
            except KeyError:
                if subject == "*":
                    continue
                raise InvalidParameterError(
                    f"rule {rule.text!r}: {r.attack} reports no metric {metric!r}; available: {', '.join(_leaf_paths(tree))}."
                ) from None
            v = _as_number(value, rule, f"{r.attack}.{metric}")
            outcomes.append(RuleOutcome(rule, r.attack, metric, v, rule.holds(v)))
            found = True
        if not found:
            raise InvalidParameterError(f"rule {rule.text!r}: no attack that ran reports the metric {metric!r}.")
    return outcomes


def check_policy(report: ReportModel, rules: Sequence[Rule]) -> list[RuleOutcome]:
    """Evaluate the rules; return the outcomes when none fails.

    Raises:
        PolicyViolationError: naming every failing rule and the value that failed it.
        InvalidParameterError: a rule cannot be checked against this report.
    """
    outcomes = evaluate_rules(report, rules)
    failed = [o for o in outcomes if o.failed]
    if failed:
        raise PolicyViolationError("; ".join(o.describe() for o in failed))
    return outcomes
