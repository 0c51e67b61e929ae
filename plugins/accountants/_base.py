"""Shared machinery of the built-in accountants: the history of steps, validation, calibration.

The history is a mapping (event, sample rate) -> number of steps; each accountant turns it into
epsilon / delta with its own pure functions (``_rdp_math``, ``_pld_math``).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from scipy import optimize

from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Accountant, PrivacyEvent

__all__ = ["MAX_SCHEDULE_STEPS", "HistoryAccountant", "group_epsilon", "pure_epsilon_of", "round_sigma_down"]

#: event kinds and the parameters each must carry
EVENT_PARAMS: dict[str, tuple[str, ...]] = {
    "gaussian": ("noise_multiplier",),
    "laplace": ("scale",),
    "vmf": ("epsilon",),
    "pure": ("epsilon",),
    "none": (),
}

Key = tuple[str, tuple[tuple[str, float], ...], float]

#: Longest per-step schedule (e.g. a decaying noise multiplier) expanded step by step.
MAX_SCHEDULE_STEPS = 10_000_000


def round_sigma_down(sigma: float, resolution: float) -> float:
    """Round a noise multiplier down onto a geometric grid of relative spacing ``resolution``.

    Rounding noise down can only increase the privacy loss charged, so grouping nearby values
    this way keeps every bound valid while letting a decaying schedule share computations.
    """
    if resolution <= 0 or sigma <= 0 or not math.isfinite(sigma):
        return sigma
    step = math.log1p(resolution)
    return math.exp(math.floor(math.log(sigma) / step + 1e-12) * step)


def pure_epsilon_of(kind: str, params: Mapping[str, float]) -> float:
    """Pure-DP epsilon of a Laplace, vMF or pure event (Laplace: 1/scale; vMF: epsilon * max_distance)."""
    if kind == "laplace":
        s = float(params["scale"])
        return math.inf if s == 0 else 1.0 / s
    if kind == "vmf":
        return float(params["epsilon"]) * float(params.get("max_distance", 2.0))
    if kind == "pure":
        return float(params["epsilon"])
    raise InvalidParameterError(f"event kind {kind!r} is not a pure-DP event.")


def group_epsilon(acct: Accountant, delta: float, group_size: int) -> float:
    """Epsilon for groups of ``group_size`` records (user-level DP), from an example-level accountant.

    Takes the smaller of two valid bounds: (k eps, k e^{(k-1) eps} delta_ex) group privacy (Vadhan 2017,
    Lemma 2.2), solved for the example-level delta_ex that gives ``delta`` (as TF Privacy's
    compute_dp_sgd_privacy_statement), and, when the accountant has an RDP curve, Mironov 2017 Prop. 2
    (an (alpha, e)-RDP step is (alpha / 2^c, 3^c e)-RDP for groups of 2^c records).

    Raises:
        InvalidParameterError: a group size < 1 or a delta outside (0, 1).
    """
    k = int(group_size)
    if k != group_size or k < 1:
        raise InvalidParameterError(f"max examples per user must be a positive integer; got {group_size!r}.")
    if not (0.0 < float(delta) < 1.0):
        raise InvalidParameterError(f"delta must be in (0, 1); got {delta!r}.")
    if k == 1:
        return float(acct.epsilon(delta))

    def user_delta(log_d: float) -> float:
        e = acct.epsilon(math.exp(log_d))
        return math.inf if math.isinf(e) else math.log(k) + (k - 1) * e + log_d

    # user_delta grows with the example delta: bisect on log(example delta) in (log(delta) - 60, log(delta / k)]
    lo, hi = math.log(delta) - 60.0, math.log(delta / k)
    best = math.inf
    if user_delta(lo) <= math.log(delta):
        for _ in range(50):
            mid = (lo + hi) / 2
            if user_delta(mid) <= math.log(delta):
                lo = mid
            else:
                hi = mid
        best = k * float(acct.epsilon(math.exp(lo)))
    rdp_curve = getattr(acct, "rdp", None)
    orders = getattr(acct, "orders", None)
    if callable(rdp_curve) and orders is not None:
        from ._rdp_math import eps_from_rdp

        c = math.ceil(math.log2(k))
        new_orders = np.asarray(orders, dtype=float) / 2**c
        keep = new_orders > 1
        if keep.any():
            eps_rdp, _ = eps_from_rdp(new_orders[keep], 3**c * np.asarray(rdp_curve())[keep], delta)
            best = min(best, eps_rdp)
    return float(best)


class HistoryAccountant(Accountant):
    """Base of the built-in accountants: keeps ``(event, sample_rate) -> count`` and validates input.

    Subclasses set ``supported_kinds`` and implement ``_epsilon(delta)`` and ``_delta(epsilon)``.
    """

    supported_kinds: ClassVar[tuple[str, ...]] = ("gaussian",)
    #: whether the accountant's answer is a proven upper bound (False for GDP's CLT)
    is_upper_bound: ClassVar[bool] = True

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._history: dict[Key, int] = {}

    # -- history -------------------------------------------------------------------------------
    def _resolution(self) -> float:
        return float(getattr(self.params, "sigma_resolution", 0.0))

    def _key(self, event: PrivacyEvent, sample_rate: float) -> Key:
        if not isinstance(event, PrivacyEvent):
            raise InvalidParameterError(f"{self.name}: expected a PrivacyEvent; got {type(event).__name__}.")
        if event.kind not in EVENT_PARAMS:
            raise InvalidParameterError(f"{self.name}: unknown event kind {event.kind!r}; expected one of {sorted(EVENT_PARAMS)}.")
        if event.kind not in self.supported_kinds and event.kind != "none":
            others = {
                "gaussian": "acct.rdp, acct.pld, acct.zcdp, acct.gdp",
                "laplace": "acct.rdp, acct.pld, acct.zcdp",
                "vmf": "acct.rdp, acct.pld, acct.zcdp",
                "pure": "acct.rdp, acct.pld, acct.zcdp",
            }
            raise InvalidParameterError(
                f"{self.name} cannot account {event.kind!r} events (it supports {', '.join(self.supported_kinds)}); "
                f"use one of {others.get(event.kind, 'the other accountants')}."
            )
        missing = [p for p in EVENT_PARAMS[event.kind] if p not in event.params]
        if missing:
            raise InvalidParameterError(f"{self.name}: {event.kind} event lacks {missing}; got {dict(event.params)}.")
        q = float(sample_rate)
        if not (0.0 <= q <= 1.0) or math.isnan(q):
            raise InvalidParameterError(
                f"sample_rate must be in [0, 1]; got {sample_rate!r}. Pass batch_size / len(dataset), not the batch size."
            )
        params = {k: float(v) for k, v in event.params.items()}
        for k, v in params.items():
            if math.isnan(v) or v < 0:
                raise InvalidParameterError(f"{self.name}: {event.kind} event parameter {k} must be >= 0; got {v}.")
        if event.kind == "gaussian":
            params["noise_multiplier"] = round_sigma_down(params["noise_multiplier"], self._resolution())
        return (event.kind, tuple(sorted(params.items())), q)

    def step(self, event: PrivacyEvent, *, sample_rate: float, count: int = 1) -> None:
        """Record ``count`` steps of ``event`` on Poisson-sampled batches of rate ``sample_rate``.

        Raises:
            InvalidParameterError: an event kind this accountant cannot charge, a sample rate
                outside [0, 1], or a negative count.
        """
        if int(count) != count or count < 0:
            raise InvalidParameterError(f"count must be a non-negative integer; got {count!r}.")
        if count == 0:
            return
        key = self._key(event, sample_rate)
        self._history[key] = self._history.get(key, 0) + int(count)

    def extend(self, steps: Iterable[tuple[PrivacyEvent, float, int]]) -> HistoryAccountant:
        """Record several ``(event, sample_rate, count)`` entries; returns self."""
        for event, q, c in steps:
            self.step(event, sample_rate=q, count=c)
        return self

    @property
    def history(self) -> list[tuple[PrivacyEvent, float, int]]:
        """The recorded ``(event, sample_rate, count)`` entries (grouped, in first-seen order)."""
        return [(PrivacyEvent(kind, dict(params)), q, c) for (kind, params, q), c in self._history.items()]

    @property
    def steps(self) -> int:
        """Total number of recorded steps."""
        return sum(self._history.values())

    def reset(self) -> None:
        """Forget every recorded step."""
        self._history = {}

    def copy(self) -> HistoryAccountant:
        """An independent accountant with the same options and history (caches shared)."""
        new = type(self)(self.params)
        new._history = dict(self._history)
        for attr in ("_cache",):
            if hasattr(self, attr):
                setattr(new, attr, getattr(self, attr))
        return new

    def _has_none(self) -> bool:
        for (kind, params, q), c in self._history.items():
            if c > 0 and q > 0:
                if kind == "none":
                    return True
                p = dict(params)
                if kind == "gaussian" and p["noise_multiplier"] == 0:
                    return True
                if kind == "laplace" and p["scale"] == 0:
                    return True
                if kind in ("vmf", "pure") and math.isinf(pure_epsilon_of(kind, p)):
                    return True
        return False

    # -- queries ---------------------------------------------------------------------------------
    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0 for an empty history).

        Raises:
            InvalidParameterError: delta outside (0, 1).
        """
        if not (0.0 < float(delta) < 1.0):
            raise InvalidParameterError(f"delta must be in (0, 1); got {delta!r}. A usual choice is 1/n or smaller, e.g. 1e-5.")
        if not self._history:
            return 0.0
        if self._has_none():
            return math.inf
        return float(self._epsilon(float(delta)))

    def delta(self, epsilon: float) -> float:
        """Delta at ``epsilon`` for what was spent so far.

        Raises:
            InvalidParameterError: a negative epsilon.
        """
        if not (float(epsilon) >= 0.0):
            raise InvalidParameterError(f"epsilon must be >= 0; got {epsilon!r}.")
        if not self._history:
            return 0.0
        if self._has_none():
            return 1.0
        return float(min(1.0, max(0.0, self._delta(float(epsilon)))))

    @abstractmethod
    def _epsilon(self, delta: float) -> float:
        """Epsilon of the (non-empty, finite) history at ``delta``."""

    @abstractmethod
    def _delta(self, epsilon: float) -> float:
        """Delta of the (non-empty, finite) history at ``epsilon``."""

    def group_epsilon(self, delta: float, group_size: int) -> float:
        """Epsilon at ``delta`` for users contributing up to ``group_size`` records (see ``group_epsilon``)."""
        return group_epsilon(self, delta, group_size)

    def epsilon_if(self, steps: Iterable[tuple[PrivacyEvent, float, int]], *, delta: float) -> float:
        """Epsilon after the recorded history plus ``steps``, without recording them."""
        return self.copy().extend(steps).epsilon(delta)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: name, options, total steps, grouped history."""
        return {
            "accountant": self.name,
            "certified": bool(self.is_upper_bound),
            "options": self.params.model_dump(),
            "steps": self.steps,
            "history": [{"event": e.kind, **dict(e.params), "sample_rate": q, "count": c} for e, q, c in self.history],
        }

    # -- calibration -----------------------------------------------------------------------------
    def calibrate_history(
        self,
        build: Callable[[float], Iterable[tuple[PrivacyEvent, float, int]]],
        *,
        target_epsilon: float,
        delta: float,
        bounds: tuple[float, float] = (1e-3, 1e4),
        rtol: float = 1e-4,
        guess: float | None = None,
        allow_approximate: bool = False,
    ) -> float:
        """The smallest parameter x (e.g. a noise multiplier) whose history ``build(x)`` meets the target.

        ``build(x)`` must return the steps that would run with parameter x; epsilon must fall as
        x grows. The answer is on the safe side: epsilon(answer) <= target_epsilon.

        Args:
            allow_approximate: calibrate with an accountant whose answer is not an upper bound
                (``certified`` False, e.g. acct.gdp); refused otherwise.

        Raises:
            InvalidParameterError: a target epsilon <= 0, one no x within ``bounds`` reaches, or an
                uncertified accountant without ``allow_approximate``.
        """
        if not self.is_upper_bound and not allow_approximate:
            raise InvalidParameterError(
                f"{self.name} is an approximation (certified: false): a noise multiplier calibrated with it may "
                "exceed the budget. Use acct.pld or acct.rdp, or pass allow_approximate=True (--allow-approximate)."
            )
        if not (target_epsilon > 0) or math.isinf(target_epsilon):
            raise InvalidParameterError(f"target_epsilon must be a finite number > 0; got {target_epsilon!r}.")
        fresh = type(self)(self.params)
        if hasattr(self, "_cache"):
            fresh._cache = self._cache  # type: ignore[attr-defined]

        def eps_at(x: float) -> float:
            fresh.reset()
            fresh.extend(build(x))
            return fresh.epsilon(delta)

        lo, hi = bounds
        # Bracket outwards from the guess (default 1: cheap, well-conditioned), not from the extremes.
        a = b = float(guess) if guess and lo < guess < hi else 1.0
        grow = 1.15 if guess else 4.0
        e_b = eps_at(b)
        while e_b > target_epsilon:
            a, b = b, b * grow
            if b > hi:
                raise InvalidParameterError(
                    f"{self.name}: even a noise multiplier of {hi:g} spends epsilon {eps_at(hi):.4g} > target "
                    f"{target_epsilon:g} at delta {delta:g}. Use fewer steps, a smaller sample rate, or a larger target."
                )
            e_b = eps_at(b)
        if a == b:
            while eps_at(a) <= target_epsilon:
                b, a = a, a / grow
                if a < lo:
                    return b
        lo, hi = a, b
        f = lambda t: eps_at(math.exp(t)) - target_epsilon  # noqa: E731 - one-line objective
        t = optimize.brentq(f, math.log(lo), math.log(hi), xtol=rtol / 4, rtol=1e-12, maxiter=200)
        x = math.exp(t)
        # step up until the answer is on the safe side of the target
        for _ in range(60):
            if eps_at(x) <= target_epsilon:
                return x
            x *= 1.0 + rtol
        return x

    def calibrate(
        self,
        *,
        target_epsilon: float,
        delta: float,
        sample_rate: float,
        steps: int,
        schedule: Callable[[np.ndarray], np.ndarray] | None = None,
        resolution: float = 1e-2,
        allow_approximate: bool = False,
    ) -> float:
        """Noise multiplier (or sigma0 of a decay ``schedule``) meeting (target_epsilon, delta).

        Args:
            schedule: maps step indices (0..steps-1) to the factor sigma_t / sigma0 (e.g. a
                ``dp.ada-gaussian``'s ``factors``); None for a constant multiplier.
            resolution: relative grid on which a decaying schedule's multipliers are rounded down
                while calibrating (conservative: the answer can only grow).
            allow_approximate: see ``calibrate_history``.
        """
        if int(steps) != steps or steps < 1:
            raise InvalidParameterError(f"steps must be a positive integer; got {steps!r}.")
        if schedule is None:
            return self.calibrate_history(
                lambda s: [(PrivacyEvent("gaussian", {"noise_multiplier": s}), sample_rate, int(steps))],
                target_epsilon=target_epsilon,
                delta=delta,
                allow_approximate=allow_approximate,
            )
        if steps > MAX_SCHEDULE_STEPS:
            raise InvalidParameterError(
                f"a decay schedule over {steps} steps is too long to expand (at most {MAX_SCHEDULE_STEPS}); "
                "calibrate a constant noise multiplier or fewer steps."
            )
        factors = np.asarray(schedule(np.arange(int(steps))), dtype=float)

        def build(s0: float) -> list[tuple[PrivacyEvent, float, int]]:
            sig = s0 * factors
            if resolution > 0:
                step = math.log1p(resolution)
                sig = np.exp(np.floor(np.log(np.maximum(sig, 1e-300)) / step + 1e-12) * step)
            vals, counts = np.unique(sig, return_counts=True)
            return [(PrivacyEvent("gaussian", {"noise_multiplier": float(v)}), sample_rate, int(c)) for v, c in zip(vals, counts)]

        return self.calibrate_history(build, target_epsilon=target_epsilon, delta=delta, allow_approximate=allow_approximate)
