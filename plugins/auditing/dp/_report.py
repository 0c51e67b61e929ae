"""What ``audit.dp`` reports beside its bound: every accountant's epsilon, and the report's HTML section."""

from __future__ import annotations

from typing import Any

from audit_sdk.accounting import PrivacyEvent

__all__ = ["accountant_epsilons", "sections"]


def accountant_epsilons(
    events: list[dict[str, Any]], *, delta: float, registry: Any, names: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Epsilon at ``delta`` of the charged ``events`` under each accountant (every registered one by default).

    An accountant that cannot charge an event kind reports the error instead of a number.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names if names is not None else registry.names("accountant"):
        cls = registry.get("accountant", name)
        try:
            acct = cls().extend((PrivacyEvent(ev["kind"], ev["params"]), float(ev["sample_rate"]), int(ev["count"])) for ev in events)
            out[cls.name] = {"epsilon": float(acct.epsilon(delta)), "upper_bound": bool(acct.is_upper_bound)}
        except Exception as exc:  # an accountant that does not fit these events: reported, not fatal
            out[cls.name] = {"epsilon": None, "error": str(exc).splitlines()[0][:200]}
    return out


def sections(report: Any) -> list[dict[str, Any]]:
    """A "DP audit" section: the claim, every accountant's epsilon and the lower bound, per audit.dp result."""
    from html import escape

    out = []
    for res in getattr(report, "results", []):
        info = res.extra.get("dp_audit") if isinstance(res.extra, dict) else None
        if not info:
            continue

        def num(v: Any) -> str:
            return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else escape(str(v))

        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{num(a.get('epsilon'))}</td>"
            f"<td>{'proven upper bound' if a.get('upper_bound') else escape(a.get('error', 'approximation'))}</td></tr>"
            for name, a in info["accountants"].items()
        )
        colour = {"violated": "#b00020", "consistent": "#1b5e20"}.get(info["verdict"], "#444")
        one = info.get("one_run") or {}
        how = (
            f"{one.get('correct')} of {one.get('guesses')} guesses right on {info['canaries']} canaries ({one.get('included')} included), "
            f"statistic {escape(str(one.get('statistic')))}"
            if one
            else f"{info['runs']} training runs, one canary in half of them"
        )
        html = (
            f"<p style='color:{colour}'><b>{escape(info['verdict'])}</b>: {escape(info['text'])}.</p>"
            f"<p>Empirical epsilon lower bound <b>{num(info['epsilon_lower_bound'])}</b> at {info['confidence']:.0%} confidence "
            f"(delta {num(info['delta'])}; {escape(info['mode'])}, {escape(info['canary'])} canaries, {escape(info['threat_model'])} "
            f"threat model; {how}). Claimed epsilon: {num(info['claimed_epsilon'])} (the defense reports {num(info['defense_epsilon'])}). "
            f"Test accuracy of the audited run: {num(info['test_accuracy'])}.</p>"
            f"<table><tr><th>accountant</th><th>epsilon</th><th></th></tr>{rows}</table>"
            if rows
            else f"<p style='color:{colour}'><b>{escape(info['verdict'])}</b>: {escape(info['text'])}.</p>"
        )
        out.append({"title": f"DP audit ({res.attack})", "html": html, "data": info})
    return out
