"""``audit_sdk.audit_dp``: check a DP training recipe's privacy claim with canaries, in one call.

    report = audit_sdk.audit_dp("mlp", defense_params={"target_epsilon": 8.0})   # embedded digits
    report.results[0].extra["dp_audit"]["verdict"], report.results[0].metrics["epsilon_lower_bound"]

It runs the ``audit.dp`` attack through ``run_audit``, so the result joins an ordinary AuditReport
(JSON, HTML, ``--fail-on`` rules). A named architecture is built through the ``make_trainer``
hook (``audit_sdk.training``), so no framework is named here.
"""

from __future__ import annotations

from typing import Any

from .data import AuditData
from .errors import InvalidDataError
from .rng import RNGLike

__all__ = ["audit_dp", "digits_dp_audit_data"]


def digits_dp_audit_data(*, n_members: int = 1437, n_non_members: int = 360, rng: RNGLike = 0) -> AuditData:
    """The embedded digits split for DP audits: a training set (members) and a held-out test set.

    Defaults use all 1,797 digits (80% / 20%). Random-label canaries need population inputs:
    lower ``n_members`` and pass the rest as population through ``make_audit_data`` instead.
    """
    from .data import load_digits_data, make_audit_data

    digits = load_digits_data()
    n_members = min(n_members, len(digits) - n_non_members)
    data, _ = make_audit_data(digits, n_members=n_members, n_non_members=n_non_members, rng=rng)
    return data


def audit_dp(
    model: Any = "mlp",
    data: AuditData | None = None,
    *,
    defense: str | None = "defense.dp-sgd",
    defense_params: dict[str, Any] | None = None,
    rng: RNGLike = 0,
    registry: Any = None,
    context: Any = None,
    progress: bool | None = None,
    label: str | None = None,
    **options: Any,
) -> Any:
    """Audit a training recipe (architecture + defense + training options) with ``audit.dp``.

    Args:
        model: a ``torch.nn.Module`` (its architecture is re-initialised and trained again) or a
            default architecture name (``mlp``, ``cnn``, ``lenet``) sized from the data.
        data: members (the training set), non-members (held out: test accuracy) and optional
            population (inputs for random-label canaries); None uses the embedded digits.
        defense: the training defense audited (None: plain training, which claims nothing).
        defense_params: its options, e.g. ``{"target_epsilon": 8.0, "delta": 1e-5}``.
        **options: options of ``audit.dp`` (``canaries``, ``canary``, ``threat_model``, ``mode``,
            ``runs``, ``epochs``, ``batch_size``, ``lr``, ``confidence``, ...).

    Returns:
        AuditReport with one ``audit.dp`` result: ``metrics["epsilon_lower_bound"]`` and
        ``extra["dp_audit"]`` (verdict, claimed epsilon, every accountant's epsilon).

    Raises:
        InvalidParameterError: unknown options, defense or architecture.
        InvalidDataError: data that cannot hold the canaries asked for.
    """
    from .run import run_audit
    from .training import make_trainer

    if data is None:
        data = digits_dp_audit_data(rng=0)
    if not isinstance(data, AuditData):
        raise InvalidDataError(f"data must be an AuditData (see audit_sdk.make_audit_data) or None; got {type(data).__name__}.")
    if isinstance(model, str):  # a named architecture, sized from the data by the adapter that builds it
        reg = registry if registry is not None else getattr(context, "registry", None)
        model = make_trainer(model, {"input_shape": data.feature_shape, "n_classes": data.n_classes}, registry=reg).build(0)
    params = {"defense": defense, "defense_params": dict(defense_params or {}), **options}
    return run_audit(
        model,
        data,
        attacks=[("audit.dp", params)],
        rng=rng,
        registry=registry,
        context=context,
        progress=progress,
        label=label,
    )
