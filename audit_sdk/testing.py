"""Conformance checks every component must pass (scikit-learn's ``check_estimator`` habit).

A third-party plugin meets the same bar as the built-ins by calling these from its own tests::

    from audit_sdk.testing import check_attack, check_plugin

    def test_my_attack():
        check_attack(MyAttack)               # one class

    def test_my_plugin():
        import my_plugin
        check_plugin(my_plugin)              # everything its register hooks return

Each ``check_*`` function runs the rules of one component kind and returns the ids of the rules it
checked; a broken rule (or an exception raised while it runs) raises ``AssertionError`` naming the
component and the rule, e.g.
``mia.my-attack [seeded-repeat]: two runs with rng=0 gave different scores``.

Rules common to every component (``check_component``): ``name`` (a kebab-case name namespaced by
family, unique among registered components), ``summary`` (one line), ``params-model`` (a pydantic
``Params`` with ``extra="forbid"``), ``params-defaults`` (the defaults, or the options given,
validate and construct an instance) and ``unknown-option`` (refused with ``InvalidParameterError``
naming the option). Each kind adds its own behavioural rules; see each function.

The built-in fixture (``small_audit_problem``) is a scikit-learn logistic regression on 100 members
of the embedded digits, with 100 non-members and 200 population rows: no torch, a second to build.
Attacks that need more than black-box access (white-box, gradients, training, sequence) run only
when given a ``target`` and ``data`` that offer it; their static rules always run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from .data import AuditData, load_digits_data, make_audit_data
from .errors import AccessError, InvalidParameterError, NotSupportedError
from .interfaces import ACCESS_LEVELS, PERTURBATION_POINTS, Accountant, Attack, Component, Defense, Mechanism, PrivacyEvent
from .registry import _NAME_RE
from .results import AttackResult
from .target import Target
from .training import Trainer, TrainResult

__all__ = [
    "AuditProblem",
    "check_accountant",
    "check_attack",
    "check_component",
    "check_defense",
    "check_mechanism",
    "check_plugin",
    "check_trainer",
    "small_audit_problem",
]

#: The option name no component accepts (the ``unknown-option`` rule passes it).
UNKNOWN_OPTION = "no_such_option_for_conformance"

#: Attack access levels the built-in fixture (a scikit-learn classifier) offers.
_FIXTURE_ACCESS = ("label-only", "black-box")


def _fail(owner: str, rule: str, message: str) -> AssertionError:
    return AssertionError(f"{owner} [{rule}]: {message}")


@contextmanager
def _rule(owner: str, rule: str) -> Iterator[None]:
    """Report an exception raised while a rule runs as that rule's failure."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as exc:
        raise _fail(owner, rule, f"raised {type(exc).__name__}: {exc}") from exc


def _owner(cls: Any) -> str:
    name = getattr(cls, "name", None)
    return name if isinstance(name, str) and name else getattr(cls, "__name__", repr(cls))


@dataclass
class AuditProblem:
    """A small target with its audit data, for running attacks and defenses in checks.

    Attributes:
        target: a fitted classifier behind the Target protocol.
        data: members (its training set), non-members and a population.
    """

    target: Target
    data: AuditData


def small_audit_problem(seed: int = 0) -> AuditProblem:
    """Build the kit's fixture: a logistic regression that saw 100 digits, and its AuditData.

    Needs scikit-learn (a dependency of audit-sdk) and no torch. The target comes from
    ``audit_sdk.load_target`` (the ``make_target`` hook), as a user's estimator would.

    Args:
        seed: chooses the split of the embedded digits.

    Returns:
        The target, and data with 100 members, 100 non-members and 200 population rows.
    """
    from sklearn.linear_model import LogisticRegression

    from .run import load_target

    split, _ = make_audit_data(load_digits_data(), n_members=100, n_non_members=100, n_population=200, rng=seed)
    flat = [(s.x.reshape(len(s.x), -1), s.y) for s in (split.members, split.non_members, split.population) if s is not None]
    data = AuditData(*flat)  # 64 features: the estimator's input, so a defense that morphs inputs sees what the model takes
    estimator = LogisticRegression(max_iter=300).fit(*flat[0])
    return AuditProblem(target=load_target(estimator), data=data)


# ----------------------------------------------------------------------------- common rules


def check_component(
    cls: Any,
    *,
    kind: type[Component] = Component,
    params: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> list[str]:
    """Check the rules every plugin class shares, and return their ids.

    Args:
        cls: the component class (not an instance).
        kind: the interface it must implement (``Attack``, ``Defense``, ``Mechanism``, ``Accountant``).
        params: options to construct it with when its defaults alone do not validate.
        registry: where to look for a clashing name (default: ``audit_sdk.get_registry()``); pass
            False to skip the uniqueness part of the ``name`` rule.

    Raises:
        AssertionError: naming the component and the broken rule.
    """
    owner = _owner(cls)
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise _fail(owner, "interface", f"{cls!r} is not a subclass of {kind.__name__}.")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(owner, "name", f"name {name!r} is not kebab-case namespaced by family, like 'mia.loss-threshold'.")
    if registry is not False:
        from .registry import get_registry

        reg = registry if registry is not None else get_registry()
        for table in reg.components.values():
            info = table.get(name)
            if info is not None and (info.cls.__module__, info.cls.__qualname__) != (cls.__module__, cls.__qualname__):
                raise _fail(owner, "name", f"name {name!r} is already registered by {info.package} ({info.cls.__module__}).")
    summary = getattr(cls, "summary", None)
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
        raise _fail(owner, "summary", f"summary must be one non-empty line; got {summary!r}.")
    model = getattr(cls, "Params", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise _fail(owner, "params-model", "Params must be a pydantic BaseModel subclass.")
    if model.model_config.get("extra") != "forbid":
        raise _fail(owner, "params-model", 'Params must set model_config = ConfigDict(extra="forbid"), so a misspelt option is refused.')
    try:
        cls.parse_params(dict(params or {}))
        cls(dict(params or {}))
    except Exception as exc:
        raise _fail(owner, "params-defaults", f"constructing with {dict(params or {})!r} failed: {type(exc).__name__}: {exc}") from exc
    try:
        cls.parse_params({**dict(params or {}), UNKNOWN_OPTION: 1})
    except InvalidParameterError as exc:
        if UNKNOWN_OPTION not in str(exc):
            raise _fail(owner, "unknown-option", f"the error does not name the unknown option: {exc}") from exc
    except Exception as exc:
        raise _fail(owner, "unknown-option", f"an unknown option raised {type(exc).__name__}, not InvalidParameterError: {exc}") from exc
    else:
        raise _fail(owner, "unknown-option", f"the unknown option {UNKNOWN_OPTION!r} was accepted.")
    return ["interface", "name", "summary", "params-model", "params-defaults", "unknown-option"]


# ----------------------------------------------------------------------------- attacks


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def check_attack(
    cls: type[Attack],
    *,
    params: Mapping[str, Any] | None = None,
    target: Target | None = None,
    data: AuditData | None = None,
    seed: int = 0,
    registry: Any = None,
) -> list[str]:
    """Check an Attack class, running it on ``target`` and ``data`` (default: the kit's fixture).

    Rules beyond the common ones: ``access`` (one of ``ACCESS_LEVELS``), ``result-kind``
    (``membership`` or ``reconstruction``), ``check-fixture`` (``check`` finds no problem), ``run`` (it runs without raising),
    ``result`` (an AttackResult of this attack and kind), ``scores`` (membership: one finite score
    per member and non-member, truth in the order of ``data.combined()``), ``reconstructions``
    (as many as originals, finite), ``metrics`` (the core scores it), ``seeded-repeat`` (a second
    run with the same seed gives an identical result).

    Args:
        cls: the Attack class.
        params: options for the run (keep them small: e.g. ``{"n_references": 2}``).
        target: the model to attack; without it (and ``data``) the fixture is used when the
            attack's access is black-box or label-only, and the run rules are skipped otherwise.
        data: the audit data for ``target``.
        seed: the seed of both runs.
        registry: see ``check_component``.

    Returns:
        The ids of the rules checked.
    """
    rules = check_component(cls, kind=Attack, params=params, registry=registry)
    owner = _owner(cls)
    if cls.access not in ACCESS_LEVELS:
        raise _fail(owner, "access", f"access {cls.access!r} is not one of {ACCESS_LEVELS}.")
    if cls.result_kind not in ("membership", "reconstruction"):
        raise _fail(owner, "result-kind", f"result_kind {cls.result_kind!r} is not 'membership' or 'reconstruction'.")
    rules += ["access", "result-kind"]
    if target is None or data is None:
        if cls.access not in _FIXTURE_ACCESS:
            return rules  # the fixture cannot serve it: the caller passes a target that can
        problem = small_audit_problem()
        target = problem.target if target is None else target
        data = problem.data if data is None else data
    attack = cls(dict(params or {}))
    with _rule(owner, "check-fixture"):
        problems = attack.check(target, data)
    if problems:
        raise _fail(owner, "check-fixture", f"check() reports problems on the given target and data: {problems}")
    with _rule(owner, "run"):
        result = attack.run(target, data, rng=seed, context=None)
    rules.append("check-fixture")
    _check_result(owner, cls, result, data)
    rules += ["result", "scores" if cls.result_kind == "membership" else "reconstructions", "metrics"]
    with _rule(owner, "seeded-repeat"):
        again = cls(dict(params or {})).run(target, data, rng=seed, context=None)
    fields = ("scores", "truth") if result.kind == "membership" else ("reconstructions", "originals")
    for f in fields:
        if not _same(getattr(result, f), getattr(again, f)):
            raise _fail(owner, "seeded-repeat", f"two runs with rng={seed} gave different {f}; normalise rng once and draw from it only.")
    rules.append("seeded-repeat")
    return rules


def _check_result(owner: str, cls: type[Attack], result: Any, data: AuditData) -> None:
    if not isinstance(result, AttackResult):
        raise _fail(owner, "result", f"run() returned {type(result).__name__}, not an AttackResult.")
    if result.attack != cls.name:
        raise _fail(owner, "result", f"result.attack is {result.attack!r}; expected the attack's name {cls.name!r}.")
    if result.kind != cls.result_kind:
        raise _fail(owner, "result", f"result.kind is {result.kind!r}; the class declares result_kind {cls.result_kind!r}.")
    if result.kind == "membership":
        _, _, truth = data.combined()
        scores = np.asarray(result.scores)
        if scores.shape != truth.shape:
            raise _fail(
                owner,
                "scores",
                f"{scores.size} scores for {truth.size} members and non-members; score every one, in data.combined() order.",
            )
        if not np.isfinite(scores).all():
            raise _fail(owner, "scores", f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite.")
        if not np.array_equal(np.asarray(result.truth), truth):
            raise _fail(owner, "scores", "truth does not follow data.combined() (members first, then non-members).")
    else:
        rec, orig = np.asarray(result.reconstructions), np.asarray(result.originals)
        if len(rec) != len(orig) or len(rec) == 0:
            raise _fail(owner, "reconstructions", f"{len(rec)} reconstructions for {len(orig)} originals.")
        if rec.dtype.kind in "fc" and not np.isfinite(rec).all():
            raise _fail(owner, "reconstructions", "reconstructions contain NaN or infinite values.")
    try:
        metrics = result.metrics
    except Exception as exc:
        raise _fail(owner, "metrics", f"the core cannot score the result: {type(exc).__name__}: {exc}") from exc
    if not isinstance(metrics, dict) or not metrics:
        raise _fail(owner, "metrics", f"the core's metrics came back empty: {metrics!r}.")


# ----------------------------------------------------------------------------- defenses


def check_defense(
    cls: type[Defense],
    *,
    params: Mapping[str, Any] | None = None,
    target: Target | None = None,
    data: AuditData | None = None,
    registry: Any = None,
) -> list[str]:
    """Check a Defense class.

    Rules beyond the common ones: ``points`` (a non-empty tuple of ``PERTURBATION_POINTS``),
    ``transform-data`` (input point: one row out per row in, labels kept in step), ``wrap-target``
    (output point: the wrapped target answers one label per query and, unless it refuses
    probabilities with ``AccessError``, one row of probabilities per query, summing to at most 1).
    Training-time points (objective, gradient, parameters) need a Trainer: check them with the
    adapter's tests.

    Args:
        cls: the Defense class.
        params: options to construct it with.
        target: the target an output defense wraps (default: the kit's fixture).
        data: data whose members feed ``transform_data`` and the wrapped target.
        registry: see ``check_component``.

    Returns:
        The ids of the rules checked.
    """
    rules = check_component(cls, kind=Defense, params=params, registry=registry)
    owner = _owner(cls)
    points = cls.points
    if not isinstance(points, tuple) or not points or any(p not in PERTURBATION_POINTS for p in points):
        raise _fail(owner, "points", f"points {points!r} must be a non-empty tuple of {PERTURBATION_POINTS}.")
    rules.append("points")
    if not ({"input", "output"} & set(points)):
        return rules
    if target is None or data is None:
        problem = small_audit_problem()
        target = problem.target if target is None else target
        data = problem.data if data is None else data
    x, y = data.members.x[:32], data.members.y[:32]
    if "input" in points:
        defense = cls(dict(params or {}))
        with _rule(owner, "transform-data"):
            out = defense.transform_data(x, y, rng=0)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise _fail(owner, "transform-data", f"transform_data must return (x, y); got {type(out).__name__}.")
        if len(out[0]) != len(x) or len(out[1]) != len(y):
            raise _fail(owner, "transform-data", f"{len(x)} rows in, {len(out[0])} features and {len(out[1])} labels out.")
        rules.append("transform-data")
    if "output" in points:
        defense = cls(dict(params or {}))
        with _rule(owner, "wrap-target"):
            if "input" in points:
                defense.transform_data(x, y, rng=0)  # a defense at both points sets its key on the input side first
            wrapped = defense.wrap_target(target)
        if not isinstance(wrapped, Target):
            raise _fail(owner, "wrap-target", f"wrap_target returned {type(wrapped).__name__}, not a Target.")
        with _rule(owner, "wrap-target"):
            labels = np.asarray(wrapped.predict_labels(x))
        if labels.shape != (len(x),):
            raise _fail(owner, "wrap-target", f"the wrapped target answered labels of shape {labels.shape} for {len(x)} queries.")
        try:
            probs = np.asarray(wrapped.predict_proba(x))
        except AccessError:
            probs = None  # serving labels only is a defense
        except Exception as exc:
            raise _fail(owner, "wrap-target", f"predict_proba raised {type(exc).__name__}: {exc}") from exc
        if probs is not None:
            # rounding and top-k serve rows that sum to less than 1: a sub-distribution is fine
            ok = probs.ndim == 2 and probs.shape[0] == len(x) and bool(np.isfinite(probs).all())
            if not ok or (probs < 0).any() or (probs.sum(axis=1) > 1 + 1e-3).any():
                raise _fail(
                    owner, "wrap-target", f"the wrapped target's probabilities (shape {probs.shape}) are not one row in [0, 1] per query."
                )
        rules.append("wrap-target")
    return rules


# ----------------------------------------------------------------------------- mechanisms


def check_mechanism(
    cls: type[Mechanism],
    *,
    params: Mapping[str, Any] | None = None,
    values: Any = None,
    sensitivity: float = 1.0,
    steps: int = 3,
    registry: Any = None,
) -> list[str]:
    """Check a Mechanism class on numpy values.

    Rules beyond the common ones: ``perturb-shape`` (the result is an array of the same shape,
    finite), ``event`` (``event(step)`` is a ``PrivacyEvent`` with a kind, for the first ``steps``
    steps), ``seeded-repeat`` (the same ``rng`` gives the same noise).

    Args:
        cls: the Mechanism class.
        params: options to construct it with.
        values: what to perturb (default: a 4 x 3 float64 array of ones).
        sensitivity: passed to ``perturb``.
        steps: how many steps' events are checked.
        registry: see ``check_component``.

    Returns:
        The ids of the rules checked.
    """
    rules = check_component(cls, kind=Mechanism, params=params, registry=registry)
    owner = _owner(cls)
    values = np.ones((4, 3)) if values is None else np.asarray(values)
    mech = cls(dict(params or {}))
    with _rule(owner, "perturb-shape"):
        out = mech.perturb(values.copy(), sensitivity=sensitivity, step=0, rng=0)
    if not isinstance(out, np.ndarray) or out.shape != values.shape:
        what = getattr(out, "shape", type(out).__name__)
        raise _fail(owner, "perturb-shape", f"perturb({values.shape} array) returned {what}; expected an array of the same shape.")
    if not np.isfinite(out).all():
        raise _fail(owner, "perturb-shape", "perturb returned NaN or infinite values.")
    rules.append("perturb-shape")
    for step in range(steps):
        with _rule(owner, "event"):
            event = mech.event(step)
        if not isinstance(event, PrivacyEvent) or not isinstance(event.kind, str) or not event.kind:
            raise _fail(owner, "event", f"event({step}) returned {event!r}; expected a PrivacyEvent with a kind.")
    rules.append("event")
    again = cls(dict(params or {})).perturb(values.copy(), sensitivity=sensitivity, step=0, rng=0)
    if not _same(out, again):
        raise _fail(owner, "seeded-repeat", "two perturbations with rng=0 differ; draw the noise from the rng you are given.")
    rules.append("seeded-repeat")
    return rules


# ----------------------------------------------------------------------------- accountants


def check_accountant(
    cls: type[Accountant],
    *,
    params: Mapping[str, Any] | None = None,
    event: PrivacyEvent | None = None,
    sample_rate: float = 0.01,
    count: int = 100,
    rounds: int = 3,
    delta: float = 1e-5,
    rtol: float = 0.05,
    registry: Any = None,
) -> list[str]:
    """Check an Accountant class by charging ``rounds`` x ``count`` steps of ``event``.

    Rules beyond the common ones: ``epsilon-nonnegative`` (finite and >= 0, from the empty
    history on), ``epsilon-monotone`` (never falls as steps are added), ``delta-inverts-epsilon``
    (``delta(epsilon(d)) <= d``, within ``rtol``), ``deterministic`` (a fresh accountant charged
    the same history answers the same epsilon), and the history contract the CLI, calibration and
    DP-SGD rely on: ``history`` (every charged step recorded), ``copy`` (independent, same epsilon),
    ``extend`` (replaying the history gives the same epsilon), ``reset`` (back to a new one). Only
    the methods of the Accountant ABC are used.

    Args:
        cls: the Accountant class.
        params: options to construct it with.
        event: what each step charges (default: a Gaussian with noise multiplier 1.0).
        sample_rate: Poisson sampling rate of each step.
        count: steps charged per round.
        rounds: how many times ``count`` steps are charged.
        delta: the delta at which epsilon is read.
        rtol: relative tolerance of the ``delta-inverts-epsilon`` rule (discretised accountants
            round pessimistically, but not exactly).
        registry: see ``check_component``.

    Returns:
        The ids of the rules checked.
    """
    rules = check_component(cls, kind=Accountant, params=params, registry=registry)
    owner = _owner(cls)
    event = event or PrivacyEvent("gaussian", {"noise_multiplier": 1.0})

    def charged(n_rounds: int) -> list[float]:
        acct = cls(dict(params or {}))
        eps = [float(acct.epsilon(delta))]
        for _ in range(n_rounds):
            acct.step(event, sample_rate=sample_rate, count=count)
            eps.append(float(acct.epsilon(delta)))
        return eps

    with _rule(owner, "epsilon-nonnegative"):
        eps = charged(rounds)
    for i, e in enumerate(eps):
        if not (math.isfinite(e) and e >= 0):
            raise _fail(owner, "epsilon-nonnegative", f"epsilon({delta}) after {i * count} steps is {e!r}; expected a finite number >= 0.")
    rules.append("epsilon-nonnegative")
    for i in range(1, len(eps)):
        if eps[i] < eps[i - 1] * (1 - 1e-9) - 1e-12:
            raise _fail(owner, "epsilon-monotone", f"epsilon fell from {eps[i - 1]!r} to {eps[i]!r} when {count} steps were added.")
    rules.append("epsilon-monotone")
    acct = cls(dict(params or {}))
    with _rule(owner, "delta-inverts-epsilon"):
        acct.step(event, sample_rate=sample_rate, count=count * rounds)
        e = float(acct.epsilon(delta))
        d = float(acct.delta(e))
    if not (math.isfinite(d) and 0 <= d <= delta * (1 + rtol) + 1e-12):
        raise _fail(owner, "delta-inverts-epsilon", f"delta(epsilon({delta}) = {e!r}) = {d!r}; expected at most {delta} (rtol {rtol}).")
    rules.append("delta-inverts-epsilon")
    if not math.isclose(charged(rounds)[-1], eps[-1], rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(owner, "deterministic", f"the same history gave epsilon {eps[-1]!r} and then a different one.")
    rules.append("deterministic")
    rules += _check_accountant_history(owner, cls, params, event, sample_rate, count, rounds, delta)
    return rules


def _check_accountant_history(
    owner: str,
    cls: type[Accountant],
    params: Mapping[str, Any] | None,
    event: PrivacyEvent,
    q: float,
    count: int,
    rounds: int,
    delta: float,
) -> list[str]:
    """The history part of the contract: what the CLI, calibration and DP-SGD rely on."""
    acct = cls(dict(params or {}))
    with _rule(owner, "history"):
        for _ in range(rounds):
            acct.step(event, sample_rate=q, count=count)
        hist = list(acct.history)
    if sum(int(c) for _e, _q, c in hist) != rounds * count or acct.steps != rounds * count:
        raise _fail(owner, "history", f"{rounds} x {count} steps were charged; history records {hist!r} (steps {acct.steps}).")
    eps = float(acct.epsilon(delta))
    with _rule(owner, "copy"):
        twin = acct.copy()
    if twin is acct or not math.isclose(float(twin.epsilon(delta)), eps, rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(owner, "copy", "copy() must return another accountant with the same history and epsilon.")
    with _rule(owner, "extend"):
        replay = cls(dict(params or {})).extend(hist)
    if not math.isclose(float(replay.epsilon(delta)), eps, rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(owner, "extend", "a fresh accountant extended with history answers another epsilon.")
    with _rule(owner, "reset"):
        twin.reset()
        empty = float(cls(dict(params or {})).epsilon(delta))
    if twin.steps != 0 or not math.isclose(float(twin.epsilon(delta)), empty, rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(owner, "reset", "after reset() the accountant must answer like a new one (no steps).")
    if not math.isclose(float(acct.epsilon(delta)), eps, rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(owner, "copy", "resetting a copy changed the original: copy() must be independent.")
    return ["history", "copy", "extend", "reset"]


# ----------------------------------------------------------------------------- trainers


def check_trainer(trainer: Trainer, *, x: Any = None, y: Any = None, tmp_path: Any = None) -> list[str]:
    """Check a Trainer instance (from ``make_trainer``) on a small data set.

    Rules: ``identity`` (a non-empty string, stable), ``fit-predict`` (after ``fit``,
    ``predict_proba`` gives (n, n_classes) float rows summing to 1), ``accuracy`` (in [0, 1]),
    ``fit-many`` (one model per seed), ``seeded-repeat`` (the same seed trains the same model),
    ``save-load`` (a saved model loads back with the same predictions; needs ``tmp_path``),
    ``train`` (``train`` without defenses returns a TrainResult holding the model), ``export``
    (``export_onnx`` writes the file or refuses with ``NotSupportedError``; needs ``tmp_path``).

    Args:
        trainer: the trainer to check.
        x: training features (default: 200 embedded digits, flattened to 64 features: make the
            trainer with ``{"input_shape": (64,), "n_classes": 10}``).
        y: their labels, 0..n_classes-1.
        tmp_path: a folder for the ``save-load`` rule; skipped when None.

    Returns:
        The ids of the rules checked.
    """
    owner = f"{type(trainer).__name__}({getattr(trainer, 'family', '?')})"
    if not isinstance(trainer, Trainer):
        raise _fail(owner, "interface", f"{trainer!r} is not an audit_sdk.training.Trainer.")
    if x is None or y is None:
        digits = load_digits_data()
        x, y = digits.x[:200].reshape(200, -1), digits.y[:200]
    x, y = np.asarray(x), np.asarray(y)
    with _rule(owner, "identity"):
        ident = trainer.identity()
    if not isinstance(ident, str) or not ident or ident != trainer.identity():
        raise _fail(owner, "identity", f"identity() must be a stable non-empty string; got {ident!r}.")
    with _rule(owner, "fit-predict"):
        model = trainer.fit(trainer.build(0), x, y, seed=0)
        probs = np.asarray(trainer.predict_proba(model, x))
    n_classes = trainer.n_classes or int(y.max()) + 1
    if probs.shape != (len(x), n_classes) or probs.dtype.kind != "f":
        raise _fail(owner, "fit-predict", f"predict_proba gave {probs.dtype} {probs.shape}; expected float ({len(x)}, {n_classes}).")
    if not np.isfinite(probs).all() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4) or (probs < 0).any():
        raise _fail(owner, "fit-predict", "predict_proba rows are not probability distributions.")
    acc = trainer.accuracy(model, x, y)
    if not 0.0 <= acc <= 1.0:
        raise _fail(owner, "accuracy", f"accuracy {acc!r} is outside [0, 1].")
    many = trainer.fit_many([x, x], [y, y], seeds=[0, 1])
    if len(many) != 2:
        raise _fail(owner, "fit-many", f"fit_many with 2 seeds returned {len(many)} models.")
    again = np.asarray(trainer.predict_proba(trainer.fit(trainer.build(0), x, y, seed=0), x))
    if not np.allclose(probs, again, rtol=1e-5, atol=1e-6):
        raise _fail(owner, "seeded-repeat", "two models built and fitted with seed 0 predict differently.")
    rules = ["interface", "identity", "fit-predict", "accuracy", "fit-many", "seeded-repeat"]
    if tmp_path is not None:
        from pathlib import Path

        path = Path(tmp_path) / f"conformance{trainer.file_suffix}"
        with _rule(owner, "save-load"):
            trainer.save(model, str(path))
            reloaded = np.asarray(trainer.predict_proba(trainer.load(str(path), 0), x))
        if not np.allclose(probs, reloaded, rtol=1e-5, atol=1e-6):
            raise _fail(owner, "save-load", "a saved and loaded model predicts differently.")
        rules.append("save-load")
    with _rule(owner, "train"):
        result = trainer.train(trainer.build(0), x, y)
    if not isinstance(result, TrainResult) or result.model is None:
        raise _fail(owner, "train", f"train() must return a TrainResult holding the model; got {type(result).__name__}.")
    rules.append("train")
    if tmp_path is not None:
        from pathlib import Path

        onnx_path = Path(tmp_path) / "conformance.onnx"
        try:
            trainer.export_onnx(result.model, str(onnx_path), example=x[:2])
        except NotSupportedError:
            pass  # a family that cannot export says so in one typed line: that is the contract
        except Exception as exc:  # noqa: BLE001 - anything else breaks the rule, named
            raise _fail(owner, "export", f"export_onnx raised {type(exc).__name__}: {exc}; expected a file or NotSupportedError.") from exc
        else:
            if not onnx_path.is_file():
                raise _fail(owner, "export", "export_onnx returned without writing the file.")
        rules.append("export")
    return rules


# ----------------------------------------------------------------------------- plugins

#: Register hook -> (interface, check function): one entry per component kind.
KIND_CHECKS: dict[str, tuple[type[Component], Callable[..., list[str]]]] = {
    "register_attacks": (Attack, check_attack),
    "register_defenses": (Defense, check_defense),
    "register_mechanisms": (Mechanism, check_mechanism),
    "register_accountants": (Accountant, check_accountant),
}


def check_plugin(
    plugin: Any,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    skip: Iterable[str] = (),
    registry: Any = None,
) -> dict[str, list[str]]:
    """Run the checks of every component a plugin registers.

    Args:
        plugin: the plugin module (or object) with ``register_*`` hook implementations, as its
            entry point names it.
        params: options per component name, e.g. ``{"mia.lira": {"n_references": 2}}``.
        skip: component names not to check (e.g. an expensive one checked elsewhere).
        registry: see ``check_component``.

    Returns:
        The rules checked, per component name.

    Raises:
        AssertionError: a hook returns something other than a list of classes, two components
            share a name, or a component breaks a rule (named in the message).
    """
    owner = getattr(plugin, "__name__", type(plugin).__name__)
    params, skip = dict(params or {}), set(skip)
    checked: dict[str, list[str]] = {}
    found = False
    for hook, (base, check) in KIND_CHECKS.items():
        impl = getattr(plugin, hook, None)
        if impl is None:
            continue
        found = True
        classes = impl()
        if not isinstance(classes, (list, tuple)):
            raise _fail(owner, "register", f"{hook}() returned {classes!r}; expected a list of {base.__name__} classes.")
        for cls in classes:
            name = _owner(cls)
            if name in checked:
                raise _fail(name, "name", f"{owner} registers {name!r} twice.")
            if name in skip:
                checked[name] = []
                continue
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise _fail(name, "interface", f"{hook}() returned {cls!r}, not a {base.__name__} subclass.")
            checked[name] = check(cls, params=params.get(name), registry=registry)
    if not found:
        raise _fail(owner, "register", "implements no register_* hook (register_attacks, register_defenses, ...).")
    return checked
