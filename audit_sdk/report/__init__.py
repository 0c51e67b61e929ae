"""The self-contained HTML report: one page, plots embedded as PNG, no network needed to view it.

    audit_sdk.report.render_html([report], "out/report.html")        # one audit
    audit_sdk.report.render_html(comparison.reports, "out/compare.html")  # one model per grid cell

Sections, top to bottom: verdict, headline table, privacy gate outcomes, ROC curves on log-log
axes (one plot per membership attack, one curve per model), accountant epsilon beside the
empirical lower bound, privacy-utility curves (when several models carry utility figures),
per-slice tables (``result.extra["slices"]``, rendered generically), reconstruction grids,
plugin sections (``report_sections`` hook), config and versions.

matplotlib and jinja2 are imported when a page is rendered, never when audit_sdk is imported.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailableError, InvalidParameterError
from ..report_model import format_value, versions

if TYPE_CHECKING:
    from ..report_model import ReportModel

__all__ = ["LEVEL_WORDS", "claimed_epsilon", "generic_table", "render_html", "verdict"]

#: What each verdict level is called on the page: words no model label uses ("none" is the grid's
#: name for the undefended model, so the level is never shown as a bare "none").
LEVEL_WORDS = {
    "violated": "DP guarantee violated",
    "high": "high leakage",
    "measurable": "measurable leakage",
    "none": "no leakage detected",
}

#: Verdict thresholds. "High": an attack identifies members with little error at a low false
#: positive rate, or proves epsilon >= 1. "Measurable": statistically significant leakage
#: (empirical epsilon lower bound > 0 at 95% confidence) or an AUC clearly above chance. TPR at
#: 1% FPR alone is not used for "measurable": with a few hundred non-members 1% FPR is two or
#: three samples, and the best of many thresholds reaches a few percent by chance.
HIGH = {"tpr_at_fpr_0.01": 0.10, "auc": 0.75, "epsilon_lower_bound": 1.0}
MEASURABLE = {"tpr_at_fpr_0.01": math.inf, "auc": 0.60, "epsilon_lower_bound": 0.0}


def _fmt(v: Any) -> str:
    """A table cell of the HTML page: the text table's format, a dash for nothing, containers as JSON."""
    if v is None:
        return "–"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return format_value(v)


def claimed_epsilon(report: ReportModel) -> tuple[float | None, str | None]:
    """The model's one claimed epsilon and the accountant that proved it (None, None without DP).

    The tightest of the figures in ``report.privacy`` (the training run's own report: every
    accountant's figure is an upper bound); the accountant is the one named beside that figure,
    or "unnamed" when the caller passed a bare ``{"epsilon": ...}``.
    """
    found: list[tuple[float, str]] = []

    def walk(node: Any, acct: str | None) -> None:
        if isinstance(node, Mapping):
            own = node.get("accountant")
            name = own if isinstance(own, str) else acct
            v = node.get("epsilon")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                found.append((float(v), name or "unnamed accountant"))
            for key, child in node.items():
                if isinstance(child, Mapping):  # {"acct.pld": {"epsilon": ...}} names its accountant by key
                    walk(child, key if isinstance(key, str) and key.startswith("acct.") else name)

    walk(report.privacy or {}, None)
    if not found:
        return None, None
    return min(found)


def _recipe_finding(res: Any) -> tuple[str, bool]:
    """A sentence on a DP audit of the training recipe (audit.dp), and whether it found leakage."""
    claim = res.extra.get("claimed_epsilon")
    lb = float(res.metrics["epsilon_lower_bound"])
    acct = ""
    accts = res.extra.get("dp_audit", {}).get("accountants") if isinstance(res.extra.get("dp_audit"), Mapping) else None
    if isinstance(claim, (int, float)) and isinstance(accts, Mapping):
        best = [k for k, v in accts.items() if isinstance(v, Mapping) and v.get("epsilon") == claim]
        acct = f" ({best[0]})" if best else ""
    if isinstance(claim, (int, float)):
        return (
            f"{res.attack} (training recipe, re-run with canaries): proves epsilon >= {lb:.3g}, "
            f"{'above' if lb > claim else 'within'} its run's claim {claim:.3g}{acct}",
            lb > claim,
        )
    return (
        f"{res.attack} (training recipe, re-run with canaries): proves epsilon >= {lb:.3g} and the recipe claims no DP",
        lb >= HIGH["epsilon_lower_bound"],
    )


def verdict(report: ReportModel) -> dict[str, Any]:
    """Summarise one report: level (``high``/``measurable``/``none``/``violated``), a sentence, and why.

    ``violated`` means an empirical lower bound exceeds the accountant's epsilon: the DP
    implementation or its accounting is wrong (or the model did not come from that run). A result
    with its own ``extra["claimed_epsilon"]`` (``audit.dp``, which trains its own runs) is checked
    against that claim.
    """
    members = [r for r in report.results if r.kind == "membership"]
    worst: dict[str, Any] = {}
    # A result that trained its own run (audit.dp: canaries in a re-run of the recipe) measures the
    # recipe, not this model's members: it decides "violated" below, not the leakage level.
    for r in (r for r in members if not _recipe_audit(r)):
        m = r.metrics
        for key, val in (
            ("auc", m["auc"]),
            ("tpr_at_fpr_0.01", m["tpr_at_fpr"]["0.01"]),
            ("epsilon_lower_bound", m["epsilon_lower_bound"]),
        ):
            if key not in worst or val > worst[key][0]:
                worst[key] = (val, r.attack)
    eps = report.theoretical_epsilon()
    reasons = []
    level = "none"
    for key, val_att in worst.items():
        val, att = val_att
        if val >= HIGH[key]:
            level = "high"
            reasons.append(f"{att}: {key.replace('_0.01', ' at 1% FPR')} = {val:.3g} (>= {HIGH[key]:g})")
    if level != "high":
        for key, (val, att) in worst.items():
            if val > MEASURABLE[key] or (key != "epsilon_lower_bound" and val >= MEASURABLE[key]):
                level = "measurable"
                reasons.append(f"{att}: {key.replace('_0.01', ' at 1% FPR')} = {val:.3g}")
    lb = worst.get("epsilon_lower_bound", (0.0, None))
    if eps is not None and lb[0] > eps:
        level = "violated"
        reasons.insert(0, f"{lb[1]} proves epsilon >= {lb[0]:.3g} but the accountant claims epsilon = {eps:.3g}")
    for r in members:
        # a result that trained its own run (audit.dp) carries that run's claim: its bound is checked against it
        own = r.extra.get("claimed_epsilon") if isinstance(r.extra, Mapping) else None
        if isinstance(own, (int, float)) and r.metrics["epsilon_lower_bound"] > own:
            level = "violated"
            reasons.insert(
                0, f"{r.attack} proves epsilon >= {r.metrics['epsilon_lower_bound']:.3g} but its training run claims epsilon = {own:.3g}"
            )
    text = {
        "violated": "The empirical leakage exceeds the differential-privacy guarantee: check the DP training and its accounting.",
        "high": "The model leaks membership of its training data.",
        "measurable": "The attacks detect some membership leakage.",
        "none": "No membership leakage detected by these attacks (an absence of evidence, not a proof of privacy).",
    }[level]
    if not members:
        text = "No membership attack was run."
    recipe = [r for r in members if _recipe_audit(r)]
    if recipe and len(recipe) == len(members) and level != "violated":
        # only recipe audits (audit.dp): say what they found instead of "no membership leakage"
        parts = []
        for r in recipe:
            claim = r.extra["claimed_epsilon"]
            lb_r = r.metrics["epsilon_lower_bound"]
            parts.append(
                f"{r.attack}: empirical epsilon lower bound {lb_r:.3g}"
                + (f", consistent with the claimed epsilon {claim:.3g}" if isinstance(claim, (int, float)) else " (the run claims no DP)")
            )
        text = "; ".join(parts) + "."
    # Every section is accounted for: a recipe audit that proves real leakage of the training
    # recipe without a DP claim raises the level to "measurable" (its canaries are not this
    # model's members, so not to "high"); reconstructions are named as left out, with why.
    recipe_notes = []
    for r in recipe:
        sentence, leaks = _recipe_finding(r)
        recipe_notes.append(sentence)
        if leaks and level == "none":
            level = "measurable"
            if len(recipe) < len(members):  # alone, the recipe audit's own sentence (above) says it
                text = "The membership attacks find no leakage of this model's members, but the DP audit of its training recipe does."
        if leaks and level != "violated" and sentence not in reasons:
            reasons.append(sentence)
    left_out = [
        f"{r.attack}: reconstruction quality (SSIM {r.metrics['ssim']:.3g}) is reported in its own section; "
        "it does not set the membership level"
        for r in report.results
        if r.kind == "reconstruction"
    ]
    failed = [p for p in report.policy if p.get("failed")]
    level = level if members else "none"
    claim, accountant = claimed_epsilon(report)
    return {
        "level": level,
        "level_words": LEVEL_WORDS[level],
        "text": text,
        "reasons": reasons,
        "recipe": recipe_notes,
        "left_out": left_out,
        "policy_failed": [p["rule"] for p in failed],
        "theoretical_epsilon": eps,
        "claimed_epsilon": claim,
        "accountant": accountant,
        "empirical_epsilon": lb[0],
    }


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)) and len(v) > 8:
            continue  # per-sample arrays do not belong in a table
        else:
            out[key] = v
    return out


#: Nested figures kept when a slice table would be too wide (membership headline metrics).
_HEADLINE_LEAVES = ("auc", "advantage", "tpr_at_fpr.0.001", "tpr_at_fpr.0.01", "epsilon_lower_bound", "ssim", "psnr")
_MAX_COLUMNS = 10


def _narrow(cols: list[str]) -> list[str]:
    """Drop nested columns that are not headline figures when a table is too wide to read."""
    if len(cols) <= _MAX_COLUMNS:
        return cols
    return [c for c in cols if "." not in c or c.split(".", 1)[1] in _HEADLINE_LEAVES or c in _HEADLINE_LEAVES]


def generic_table(obj: Any, *, first: str = "slice") -> dict[str, Any] | None:
    """Render any JSON-like slice structure as {columns, rows} (None when it is not tabular).

    Accepts a list of dicts (one row each), a dict of dicts (rows keyed by the outer key), or a
    dict of scalars (key / value rows). Nested dicts become dotted columns (``metrics.auc``);
    objects with ``to_dict()`` are converted first.
    """
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        obj = [o.to_dict() if hasattr(o, "to_dict") else o for o in obj]
        obj = [_flatten(o) if isinstance(o, Mapping) else o for o in obj]
    elif isinstance(obj, Mapping):
        obj = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in obj.items()}
        if all(isinstance(v, Mapping) for v in obj.values()):
            obj = {k: _flatten(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str) and obj and all(isinstance(r, Mapping) for r in obj):
        cols: list[str] = []
        for r in obj:
            cols += [str(k) for k in r if str(k) not in cols]
        cols = _narrow(cols)
        return {"columns": cols, "rows": [[_fmt(r.get(c)) for c in cols] for r in obj]}
    if isinstance(obj, Mapping) and obj:
        if all(isinstance(v, Mapping) for v in obj.values()):
            cols = []
            for v in obj.values():
                cols += [str(k) for k in v if str(k) not in cols]
            cols = _narrow(cols)
            return {"columns": [first, *cols], "rows": [[str(k)] + [_fmt(v.get(c)) for c in cols] for k, v in obj.items()]}
        return {"columns": ["key", "value"], "rows": [[str(k), _fmt(v)] for k, v in obj.items()]}
    return None


def _breakable(text: Any) -> Any:
    """HTML-escaped text with break opportunities after ``_ . @ /`` (long column names wrap, not overflow)."""
    import re

    from markupsafe import Markup, escape

    # a dot breaks only before a letter ("mia.lira"), never inside a number ("0.6248")
    return Markup(re.sub(r"([_@/]|\.(?=[A-Za-z]))", r"\1<wbr>", str(escape(str(text)))))


def _key_values(obj: Any) -> list[list[str]]:
    """(key, value) rows of a nested mapping, keys dotted; long lists shortened (a table, not JSON)."""
    if not isinstance(obj, Mapping):
        return [["value", _fmt(obj)]]
    rows = []
    for k, v in _flatten(obj).items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(_fmt(x) for x in v[:8]) + (f", ... ({len(v)} in all)" if len(v) > 8 else "")
        rows.append([str(k), _fmt(v)])
    return rows


def _recipe_audit(res: Any) -> bool:
    """A result that trained its own run and carries that run's claim (``audit.dp``)."""
    return isinstance(res.extra, Mapping) and "claimed_epsilon" in res.extra


def _headline_rows(reports: Sequence[ReportModel]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for rep in reports:
        for r in rep.rows():
            row: dict[str, Any] = {"model": rep.label or "model"}
            row.update(r)
            # one claimed epsilon per model, with the accountant that proved it (a DP audit's own
            # re-run and its claim are in the DP-audit rows below, not here)
            # per-model figures sit once per model in the verdict table when there are several
            if len(reports) == 1:
                eps, acct = claimed_epsilon(rep)
                row["claimed_eps"] = f"{_fmt(eps)} ({acct})" if eps is not None else "no DP"
                for k, v in rep.utility.items():
                    row[k] = v
            rows.append(row)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    # membership figures first, then reconstruction, then the model's own figures
    first = ["model", "attack", "auc", "advantage", "tpr@0.1%", "tpr@1%", "eps_lb", "ssim", "psnr", "rel_l2"]
    cols = (
        [c for c in first if c in cols]
        + [c for c in cols if c not in first and c != "seconds"]
        + (["seconds"] if "seconds" in cols else [])
    )
    if len(reports) == 1 and "model" in cols:  # absent when every attack failed
        cols.remove("model")
    return cols, [[_fmt(r.get(c)) for c in cols] for r in rows]


def _tradeoffs(reports: Sequence[ReportModel]) -> list[dict[str, str]]:
    from .plots import tradeoff_figure

    with_util = [r for r in reports if "test_accuracy" in r.utility]
    figs: list[dict[str, str]] = []
    if len(with_util) < 2:
        return figs
    # recipe audits (audit.dp) measure the training recipe with canaries, not the served model: they
    # get their own section, and an AUC of 1 there would flatten every model's curve here
    names = list(
        dict.fromkeys(res.attack for rep in with_util for res in rep.results if res.kind == "membership" and not _recipe_audit(res))
    )
    for metric, label in (("auc", "attack AUC"), ("tpr1", "attack TPR at 1% FPR")):
        series: dict[str, list[tuple[str, float, float]]] = {}
        for name in names:
            pts = []
            for rep in with_util:
                for res in rep.results:
                    if res.attack == name and res.kind == "membership":
                        y = res.metrics["auc"] if metric == "auc" else res.metrics["tpr_at_fpr"]["0.01"]
                        pts.append((rep.label or "?", float(rep.utility["test_accuracy"]), float(y)))
            series[name] = pts
        figs.append(
            {
                "title": f"Test accuracy vs {label}",
                "png": tradeoff_figure(series, xlabel="test accuracy", ylabel=label, title=f"privacy-utility: {label}"),
            }
        )
    dp = [r for r in with_util if claimed_epsilon(r)[0] is not None]
    if dp:
        series = {}
        for name in names:
            pts = []
            for rep in dp:
                for res in rep.results:
                    if res.attack == name and res.kind == "membership":
                        pts.append((rep.label or "?", float(claimed_epsilon(rep)[0] or 0.0), float(res.metrics["epsilon_lower_bound"])))
            series[name] = pts
        figs.append(
            {
                "title": "Theoretical epsilon vs empirical lower bound",
                "png": tradeoff_figure(
                    series,
                    xlabel="claimed epsilon (upper bound)",
                    ylabel="empirical epsilon lower bound",
                    title="epsilon: claimed vs measured",
                    diagonal=True,
                ),
            }
        )
    return figs


def render_html(reports: Sequence[ReportModel], path: str | Path, *, title: str | None = None, extra_config: Any = None) -> Path:
    """Write one self-contained HTML page for one or more audited models and return its path.

    Args:
        reports: the audits; several (e.g. the cells of a comparison grid) share plots.
        title: page title (default: "audit-sdk report").
        extra_config: a JSON-able object shown beside the reports' configs (e.g. a grid config).

    Raises:
        BackendUnavailableError: jinja2 or matplotlib is not installed.
    """
    try:
        import jinja2
    except ImportError as exc:
        raise BackendUnavailableError('the HTML report needs jinja2: pip install "audit-sdk[report]"') from exc
    from .plots import epsilon_figure, image_grid, roc_figure

    if not reports:
        raise InvalidParameterError("render_html needs at least one AuditReport.")
    reports = list(reports)
    t0 = time.perf_counter()
    verdicts = [{"label": r.label or "model", "utility": dict(r.utility), **verdict(r)} for r in reports]
    cols, rows = _headline_rows(reports)

    # ROC per membership attack, one curve per model.
    rocs: list[dict[str, str]] = []
    recipe_rocs: list[dict[str, str]] = []
    names = list(dict.fromkeys(res.attack for rep in reports for res in rep.results if res.kind == "membership"))
    for name in names:
        curves = []
        recipe = False
        for rep in reports:
            for res in rep.results:
                if res.attack == name and res.kind == "membership":
                    recipe = recipe or _recipe_audit(res)
                    fpr, tpr, _ = res.roc()
                    lab = f"{rep.label + ': ' if rep.label else ''}AUC {res.metrics['auc']:.3f}"
                    curves.append((lab, fpr, tpr, int(res.metrics["n_non_members"])))
        what = "canaries, log-log ROC" if recipe else "log-log ROC"
        (recipe_rocs if recipe else rocs).append({"title": name, "png": roc_figure(curves, title=f"{name} ({what})")})

    # Accountant epsilon beside the empirical lower bound.
    eps_rows, recipe_rows = [], []
    for rep in reports:
        members = [res for res in rep.results if res.kind == "membership"]
        lbs = [(res.metrics["epsilon_lower_bound"], res.attack) for res in members if not _recipe_audit(res)]
        claim, acct = claimed_epsilon(rep)
        if lbs or not members:
            best = max(lbs) if lbs else (0.0, None)
            eps_rows.append((rep.label or "model", claim, best[0], best[1], acct))
        for res in members:
            if _recipe_audit(res):  # a DP audit's own training run (the recipe), beside its own claim
                own = res.extra["claimed_epsilon"]
                accts = res.extra.get("dp_audit", {}).get("accountants") if isinstance(res.extra.get("dp_audit"), Mapping) else None
                by = next((k for k, v in (accts or {}).items() if isinstance(v, Mapping) and v.get("epsilon") == own), None)
                recipe_rows.append((rep.label or "model", own, res.metrics["epsilon_lower_bound"], res.attack, by))
    any_dp = any(r[1] is not None for r in eps_rows)
    eps_png = epsilon_figure([(r[0], r[1], r[2]) for r in eps_rows]) if eps_rows and (any_dp or len(eps_rows) > 1) else None
    recipe_png = epsilon_figure([(r[0], r[1], r[2]) for r in recipe_rows]) if recipe_rows else None

    slices = []
    grids = []
    for rep in reports:
        for res in rep.results:
            tab = generic_table(res.extra.get("slices")) if isinstance(res.extra, Mapping) and "slices" in res.extra else None
            if tab is not None:
                slices.append({"title": f"{rep.label + ': ' if rep.label else ''}{res.attack}", **tab})
            if res.kind == "reconstruction":
                m = res.metrics
                grids.append(
                    {
                        "title": f"{rep.label + ': ' if rep.label else ''}{res.attack}",
                        "caption": f"SSIM {m['ssim']:.3f}, PSNR {m['psnr']:.2f} dB, relative L2 {m['relative_l2']:.3f}",
                        "png": image_grid(res.originals, res.reconstructions, data_range=res.data_range, title=res.attack),
                    }
                )
    sections = [
        {
            "title": f"{rep.label + ': ' if rep.label and len(reports) > 1 else ''}{s.get('title', 'section')}",
            "html": str(s.get("html", "")),
        }
        for rep in reports
        for s in rep.sections
    ]
    policy = [{"label": rep.label or "model", **p} for rep in reports for p in rep.policy]
    configs = [{"label": rep.label or "model", "config": rep.config} for rep in reports if rep.config]
    details = [
        {
            "label": rep.label or "model",
            "groups": [
                {"title": title, "rows": _key_values(obj)}
                for title, obj in (
                    ("model", rep.target),
                    ("data", rep.data),
                    ("utility", rep.utility),
                    ("privacy (training run)", rep.privacy),
                    ("timings (seconds)", rep.timings),
                )
                if obj
            ],
        }
        for rep in reports
    ]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("audit_sdk.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = _fmt
    env.filters["breakable"] = _breakable
    env.filters["pretty"] = lambda o: json.dumps(o, indent=2, default=str)
    page = env.get_template("report.html.j2").render(
        title=title or "audit-sdk report",
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        verdicts=verdicts,
        top=_top_verdict(verdicts),
        columns=cols,
        rows=rows,
        policy=policy,
        rocs=rocs,
        eps_rows=[{"label": r[0], "theory": r[1], "empirical": r[2], "attack": r[3], "accountant": r[4]} for r in eps_rows],
        eps_png=eps_png,
        recipe_rows=[{"label": r[0], "theory": r[1], "empirical": r[2], "attack": r[3], "accountant": r[4]} for r in recipe_rows],
        recipe_png=recipe_png,
        recipe_rocs=recipe_rocs,
        level_words=LEVEL_WORDS,
        tradeoffs=_tradeoffs(reports),
        slices=slices,
        grids=grids,
        sections=sections,
        configs=configs,
        extra_config=extra_config,
        details=details,
        versions=versions(),
        render_seconds=time.perf_counter() - t0,
    )
    from ..fileio import write_text_atomic

    return write_text_atomic(path, page)


_ORDER = {"violated": 3, "high": 2, "measurable": 1, "none": 0}


def _top_verdict(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for v in verdicts for r in v["policy_failed"]]
    if len(verdicts) == 1:
        return {
            **verdicts[0],
            "headline": f"{LEVEL_WORDS[verdicts[0]['level']]}: {verdicts[0]['text']}",
            "policy_failed": failed,
            "left_out": sorted({x.split(":")[0] for x in verdicts[0]["left_out"]}),
        }
    worst = max(verdicts, key=lambda v: _ORDER[v["level"]])
    best = min(verdicts, key=lambda v: _ORDER[v["level"]])
    headline = (
        f"Most leaky: model \u201c{worst['label']}\u201d, {LEVEL_WORDS[worst['level']]}. "
        f"Least leaky: model \u201c{best['label']}\u201d, {LEVEL_WORDS[best['level']]}."
    )
    if worst["level"] == best["level"]:
        headline = f"Every model: {LEVEL_WORDS[worst['level']]}."
    return {
        "level": worst["level"],
        "level_words": LEVEL_WORDS[worst["level"]],
        "headline": headline,
        "text": worst["text"],
        "reasons": worst["reasons"],
        "recipe": [],
        "left_out": sorted({x.split(":")[0] for v in verdicts for x in v["left_out"]}),
        "policy_failed": failed,
    }
