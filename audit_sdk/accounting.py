"""Privacy events and the accounting maths that works over any Accountant (contract).

A mechanism reports what it ran as ``PrivacyEvent``s; an accountant records steps
``(event, sample_rate, count)`` and answers ``epsilon(delta)``. What used to live in the built-in
accountants' private base is here, written once, so that a third-party accountant implementing
only ``step``, ``epsilon`` and ``delta`` works in every command (``audit-sdk epsilon``,
``calibrate``, DP-SGD, ``audit.dp``)::

    from audit_sdk.accounting import calibrate_noise_multiplier
    sigma = calibrate_noise_multiplier(MyAccountant(), target_epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=1000)

- ``calibrate`` / ``calibrate_noise_multiplier``: the smallest noise meeting a target, searched over
  fresh copies of any accountant; the answer is on the safe side (its epsilon is <= the target),
  as Opacus's ``get_noise_multiplier`` is one free function over any accountant.
- ``group_events`` / ``gaussian_schedule``: a mechanism's per-step events grouped into
  ``(event, count)``, with noise multipliers rounded *down* onto a geometric grid when asked
  (less noise can only charge more, so every bound stays valid).
- ``group_epsilon``: user-level epsilon from an example-level accountant (group privacy).

This module sits below ``interfaces`` (which re-exports ``PrivacyEvent``): it needs accountants
only through their methods, so it imports no other part of the core but ``errors``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel

from .errors import InvalidParameterError

__all__ = [
    "MAX_SCHEDULE_STEPS",
    "PrivacyEvent",
    "Step",
    "calibrate",
    "calibrate_noise_multiplier",
    "event_key",
    "gaussian_schedule",
    "group_epsilon",
    "group_events",
    "round_down",
    "with_noise_multiplier",
]


class AccountantLike(Protocol):
    """What this module needs of an ``audit_sdk.Accountant`` (structural, so this module stays below ``interfaces``)."""

    def copy(self) -> AccountantLike:
        """A fresh accountant of the same kind and options holding the same history."""
        ...

    def reset(self) -> None:
        """Forget the history."""
        ...

    def extend(self, steps: Iterable[Step]) -> Any:
        """Charge several (event, sample rate, count) steps."""
        ...

    def epsilon(self, delta: float) -> float:
        """Epsilon of the history at ``delta``."""
        ...


class MechanismLike(Protocol):
    """What this module needs of an ``audit_sdk.Mechanism``: its name, validated options and schedule."""

    name: ClassVar[str]

    @property
    def params(self) -> BaseModel:
        """The validated options."""
        ...

    def schedule(self, steps: int, *, resolution: float = 0.0, max_distinct: int | None = None) -> list[tuple[PrivacyEvent, int]]:
        """The events of steps ``0 .. steps - 1``, grouped as ``(event, count)``."""
        ...


M = TypeVar("M", bound=MechanismLike)

#: Longest per-step schedule (e.g. a decaying noise multiplier) expanded step by step.
MAX_SCHEDULE_STEPS = 10_000_000


@dataclass(frozen=True)
class PrivacyEvent:
    """What a mechanism actually ran at one step, as an accountant needs it.

    Attributes:
        kind: mechanism family understood by accountants: ``"gaussian"`` (``noise_multiplier``),
            ``"laplace"`` (``scale`` relative to sensitivity, i.e. ``b / Δ``), ``"vmf"`` (``epsilon``
            of metric privacy), ``"pure"`` (``epsilon``), or ``"none"`` (no noise: infinite privacy
            loss). ``acct.dp-accounting`` also takes ``randomized-response``, ``discrete-laplace``,
            ``discrete-gaussian``, ``zcdp``, ``exponential``, ``permute-and-flip``, ``tree-aggregation``,
            ``repeat-and-select``, ``mixture-of-gaussians``, ``truncated-subsampled-gaussian``,
            ``sampled-without-replacement``, ``poisson-sampled``, ``composed`` and ``self-composed``
            (parameters: its ``EVENT_KINDS``).
        params: the numbers that define it (e.g. ``{"noise_multiplier": 1.1}``); composite kinds
            nest events as ``{"kind": ..., **params}`` mappings.
    """

    kind: str
    params: Mapping[str, float] = field(default_factory=dict)


#: One recorded entry of an accountant's history: ``(event, sample_rate, count)``.
Step = tuple[PrivacyEvent, float, int]


def _freeze(value: Any) -> Any:
    if isinstance(value, PrivacyEvent):
        return ("event", value.kind, _freeze(value.params))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (bool, int, float, np.number)):
        return float(value)
    return value


def event_key(event: PrivacyEvent) -> Any:
    """A hashable key of an event's kind and parameters (nested events and lists included).

    Two events with the same key are the same mechanism, so their steps may be grouped.
    """
    return (event.kind, _freeze(event.params))


def round_down(values: Any, resolution: float) -> Any:
    """Round noise multipliers down onto a geometric grid of relative spacing ``resolution``.

    Rounding noise down can only increase the privacy loss charged, so grouping nearby values
    this way keeps every bound valid while a decaying schedule shares computations. Zero,
    negative and non-finite values are returned unchanged. A float in gives a float out.
    """
    if resolution <= 0:
        return values
    step = math.log1p(resolution)
    if np.ndim(values) == 0:
        s = float(values)
        if s <= 0 or not math.isfinite(s):
            return s
        return math.exp(math.floor(math.log(s) / step + 1e-12) * step)
    arr = np.asarray(values, dtype=float)
    ok = (arr > 0) & np.isfinite(arr)
    safe = np.where(ok, arr, 1.0)
    return np.where(ok, np.exp(np.floor(np.log(safe) / step + 1e-12) * step), arr)


def _resolution_for(values: np.ndarray, max_distinct: int | None) -> float:
    """The finest grid leaving at most about ``max_distinct`` distinct positive values (0: none needed)."""
    if not max_distinct:
        return 0.0
    vals = np.unique(values)
    pos = vals[(vals > 0) & np.isfinite(vals)]
    if len(vals) <= max_distinct or not pos.size:
        return 0.0
    return math.expm1(max(1e-4, math.log(pos.max() / pos.min()) / max_distinct))


def gaussian_schedule(
    noise_multipliers: Any, *, resolution: float = 0.0, max_distinct: int | None = None
) -> list[tuple[PrivacyEvent, int]]:
    """Per-step Gaussian noise multipliers grouped into ``(event, count)`` (vectorised; ascending noise).

    Args:
        resolution: round multipliers down onto this relative grid first (a constant schedule,
            having nothing to group, is left exact).
        max_distinct: when more distinct multipliers remain, round them down onto the finest grid
            that leaves about this many (conservative, like ``resolution``).
    """
    sig = np.asarray(noise_multipliers, dtype=float).ravel()
    if sig.size == 0:
        return []
    if resolution > 0 and bool(np.any(sig != sig[0])):
        sig = round_down(sig, resolution)
    coarse = _resolution_for(sig, max_distinct)
    if coarse > 0:
        sig = round_down(sig, coarse)
    vals, counts = np.unique(sig, return_counts=True)
    return [(PrivacyEvent("gaussian", {"noise_multiplier": float(v)}), int(c)) for v, c in zip(vals, counts)]


def group_events(
    events: Iterable[PrivacyEvent | tuple[PrivacyEvent, int]], *, resolution: float = 0.0, max_distinct: int | None = None
) -> list[tuple[PrivacyEvent, int]]:
    """Group per-step events (or ``(event, count)`` pairs) into ``(event, count)``, in first-seen order.

    Gaussian events are rounded as ``gaussian_schedule`` does (``resolution``, ``max_distinct``);
    other kinds are grouped when their parameters are equal.
    """
    pairs = [(e, 1) if isinstance(e, PrivacyEvent) else (e[0], int(e[1])) for e in events]
    gauss = [float(e.params["noise_multiplier"]) for e, _c in pairs if e.kind == "gaussian" and "noise_multiplier" in e.params]
    res = resolution if resolution > 0 and len(set(gauss)) > 1 else 0.0
    coarse = _resolution_for(np.asarray(round_down(np.asarray(gauss), res) if res else gauss, dtype=float), max_distinct)
    out: dict[Any, list[Any]] = {}
    for ev, c in pairs:
        if c <= 0:
            continue
        if ev.kind == "gaussian" and "noise_multiplier" in ev.params and (res or coarse):
            s = round_down(round_down(float(ev.params["noise_multiplier"]), res), coarse)
            ev = PrivacyEvent("gaussian", {**dict(ev.params), "noise_multiplier": s})
        key = event_key(ev)
        try:
            hit = out.get(key)
        except TypeError:  # unhashable parameters: kept apart
            key, hit = (id(ev), len(out)), None
        if hit is None:
            out[key] = [ev, c]
        else:
            hit[1] += c
    return [(ev, int(c)) for ev, c in out.values()]


def with_noise_multiplier(mechanism: M, noise_multiplier: float) -> M:
    """A copy of ``mechanism`` with another ``noise_multiplier`` option (sigma0 of a decaying schedule).

    Raises:
        InvalidParameterError: a mechanism without a ``noise_multiplier`` option.
    """
    cls: Any = type(mechanism)
    fields = getattr(cls.Params, "model_fields", {})
    if "noise_multiplier" not in fields:
        raise InvalidParameterError(
            f"{mechanism.name} has no noise_multiplier option to calibrate; calibrate a Gaussian-family mechanism "
            "(dp.gaussian, dp.ada-gaussian) or one whose Params has noise_multiplier."
        )
    return cls(mechanism.params.model_copy(update={"noise_multiplier": float(noise_multiplier)}))  # type: ignore[no-any-return]


def _check_delta(delta: float) -> None:
    if not (0.0 < float(delta) < 1.0):
        raise InvalidParameterError(f"delta must be in (0, 1); got {delta!r}. A usual choice is 1/n or smaller, e.g. 1e-5.")


def calibrate(
    accountant: AccountantLike,
    build: Callable[[float], Iterable[Step]],
    *,
    target_epsilon: float,
    delta: float,
    bounds: tuple[float, float] = (1e-3, 1e4),
    rtol: float = 1e-4,
    guess: float | None = None,
    allow_approximate: bool = False,
) -> float:
    """The smallest parameter x (e.g. a noise multiplier) whose steps ``build(x)`` meet the target.

    Works over any Accountant: each trial charges ``build(x)`` on a fresh copy (``copy()`` then
    ``reset()``, so the accountant's own history is ignored and never changed). Epsilon must fall
    as x grows. The answer is on the safe side: a fresh copy charged with ``build(answer)``
    reports epsilon <= ``target_epsilon`` (certified-upper-bound semantics). The accountant may
    speed the search up with ``calibration_guess`` (e.g. acct.pld starts from the cheaper RDP
    answer); the guess only seeds the bracket, so a wrong guess costs time, never safety.

    Args:
        bounds: the range searched.
        rtol: relative precision of the answer.
        guess: where the search starts (default: the accountant's ``calibration_guess``, else 1).
        allow_approximate: calibrate with an accountant whose answer is not an upper bound
            (``is_upper_bound`` False, e.g. acct.gdp); refused otherwise.

    Raises:
        InvalidParameterError: a target epsilon <= 0, one no x within ``bounds`` reaches, or an
            approximate accountant without ``allow_approximate``.
    """
    name = getattr(accountant, "name", type(accountant).__name__)
    if not getattr(accountant, "is_upper_bound", True) and not allow_approximate:
        raise InvalidParameterError(
            f"{name} is an approximation (certified: false): a noise multiplier calibrated with it may "
            "exceed the budget. Use acct.pld or acct.rdp, or pass allow_approximate=True (--allow-approximate)."
        )
    if not (target_epsilon > 0) or math.isinf(target_epsilon):
        raise InvalidParameterError(f"target_epsilon must be a finite number > 0; got {target_epsilon!r}.")
    _check_delta(delta)
    empty = accountant.copy()
    empty.reset()

    def eps_at(x: float) -> float:
        trial = empty.copy()
        trial.extend(build(x))
        return float(trial.epsilon(delta))

    lo, hi = bounds
    if guess is None:
        hint = getattr(accountant, "calibration_guess", None)
        guess = hint(build, target_epsilon=target_epsilon, delta=delta) if callable(hint) else None
    # Bracket outwards from the guess (default 1: cheap, well-conditioned), not from the extremes.
    a = b = float(guess) if guess and lo < guess < hi else 1.0
    grow = 1.15 if guess else 4.0
    e_b = eps_at(b)
    while e_b > target_epsilon:
        a, b = b, b * grow
        if b > hi:
            raise InvalidParameterError(
                f"{name}: even a noise multiplier of {hi:g} spends epsilon {eps_at(hi):.4g} > target "
                f"{target_epsilon:g} at delta {delta:g}. Use fewer steps, a smaller sample rate, or a larger target."
            )
        e_b = eps_at(b)
    if a == b:
        while eps_at(a) <= target_epsilon:
            b, a = a, a / grow
            if a < lo:
                return b
    from scipy import optimize  # scipy is a dependency; imported here to keep `import audit_sdk` light

    f = lambda t: eps_at(math.exp(t)) - target_epsilon  # noqa: E731 - one-line objective
    t = optimize.brentq(f, math.log(a), math.log(b), xtol=rtol / 4, rtol=1e-12, maxiter=200)
    x = math.exp(t)
    # step up until the answer is on the safe side of the target (b always is)
    for _ in range(60):
        if eps_at(x) <= target_epsilon:
            return x
        x *= 1.0 + rtol
    return b


def calibrate_noise_multiplier(
    accountant: AccountantLike,
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    mechanism: MechanismLike | None = None,
    schedule: Callable[[np.ndarray], np.ndarray] | None = None,
    resolution: float = 1e-2,
    allow_approximate: bool = False,
) -> float:
    """Noise multiplier (or sigma0 of a decaying schedule) meeting (target_epsilon, delta) over ``steps`` steps.

    Args:
        accountant: any Accountant; its own history is ignored.
        mechanism: a mechanism with a ``noise_multiplier`` option whose ``schedule`` gives the
            events (e.g. ``dp.ada-gaussian``: sigma0 is calibrated); None for a constant Gaussian.
        schedule: instead of ``mechanism``, a map from step indices to sigma_t / sigma0.
        resolution: relative grid on which a decaying schedule's multipliers are rounded down
            while calibrating (conservative: the answer can only grow).
        allow_approximate: see ``calibrate``.

    Raises:
        InvalidParameterError: bad steps, or what ``calibrate`` raises.
    """
    if int(steps) != steps or steps < 1:
        raise InvalidParameterError(f"steps must be a positive integer; got {steps!r}.")
    n = int(steps)
    if (mechanism is not None or schedule is not None) and n > MAX_SCHEDULE_STEPS:
        raise InvalidParameterError(
            f"a decay schedule over {n} steps is too long to expand (at most {MAX_SCHEDULE_STEPS}); "
            "calibrate a constant noise multiplier or fewer steps."
        )
    q = float(sample_rate)
    build: Callable[[float], list[Step]]
    if mechanism is not None:
        mech = mechanism

        def build(s: float) -> list[Step]:
            return [(ev, q, c) for ev, c in with_noise_multiplier(mech, s).schedule(n, resolution=resolution)]

    elif schedule is not None:
        factors = np.asarray(schedule(np.arange(n)), dtype=float)

        def build(s: float) -> list[Step]:
            return [(ev, q, c) for ev, c in gaussian_schedule(s * factors, resolution=resolution)]

    else:

        def build(s: float) -> list[Step]:
            return [(PrivacyEvent("gaussian", {"noise_multiplier": s}), q, n)]

    return calibrate(accountant, build, target_epsilon=target_epsilon, delta=delta, allow_approximate=allow_approximate)


def group_epsilon(accountant: AccountantLike, delta: float, group_size: int) -> float:
    """Epsilon for groups of ``group_size`` records (user-level DP), from any example-level accountant.

    The (k eps, k e^{(k-1) eps} delta_ex) group-privacy bound (Vadhan 2017, Lemma 2.2), solved
    for the example-level delta_ex that gives ``delta`` (as TF Privacy's
    compute_dp_sgd_privacy_statement). Accountants with a tighter bound (acct.rdp: Mironov 2017,
    Prop. 2) take the smaller of the two in their ``group_epsilon``.

    Raises:
        InvalidParameterError: a group size < 1 or a delta outside (0, 1).
    """
    k = int(group_size)
    if k != group_size or k < 1:
        raise InvalidParameterError(f"max examples per user must be a positive integer; got {group_size!r}.")
    _check_delta(delta)
    if k == 1:
        return float(accountant.epsilon(delta))

    def user_delta(log_d: float) -> float:
        e = accountant.epsilon(math.exp(log_d))
        return math.inf if math.isinf(e) else math.log(k) + (k - 1) * e + log_d

    # user_delta grows with the example delta: bisect on log(example delta) in (log(delta) - 60, log(delta / k)]
    lo, hi = math.log(delta) - 60.0, math.log(delta / k)
    if user_delta(lo) > math.log(delta):
        return math.inf
    for _ in range(50):
        mid = (lo + hi) / 2
        if user_delta(mid) <= math.log(delta):
            lo = mid
        else:
            hi = mid
    return k * float(accountant.epsilon(math.exp(lo)))
