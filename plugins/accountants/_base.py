"""Shared machinery of the built-in accountants: the grouped history of steps and input validation.

The history is a mapping (event, sample rate) -> number of steps; each accountant turns it into
epsilon / delta with its own pure functions (``_rdp_math``, ``_pld_math``). Everything callers
use (extend, reset, copy, calibration, group epsilon) is the core Accountant contract
(``audit_sdk.interfaces.Accountant``, ``audit_sdk.accounting``); this base only keeps the history
in a form the accountants' caches can key on, so ``copy`` shares those caches.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from audit_sdk.accounting import MAX_SCHEDULE_STEPS, PrivacyEvent, round_down
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Accountant

__all__ = ["MAX_SCHEDULE_STEPS", "HistoryAccountant", "pure_epsilon_of"]

#: event kinds and the parameters each must carry
EVENT_PARAMS: dict[str, tuple[str, ...]] = {
    "gaussian": ("noise_multiplier",),
    "laplace": ("scale",),
    "vmf": ("epsilon",),
    "pure": ("epsilon",),
    "none": (),
}

Key = tuple[str, tuple[tuple[str, float], ...], float]


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


class HistoryAccountant(Accountant):
    """Base of the built-in accountants: keeps ``(event, sample_rate) -> count`` and validates input.

    Subclasses set ``supported_kinds`` and implement ``_epsilon(delta)`` and ``_delta(epsilon)``.
    It overrides the ABC's ``history``, ``reset`` and ``copy`` only to key the history the way
    the curve caches do (noise rounded onto ``sigma_resolution``) and to share those caches.
    """

    supported_kinds: ClassVar[tuple[str, ...]] = ("gaussian",)

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
            params["noise_multiplier"] = round_down(params["noise_multiplier"], self._resolution())
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

    @property
    def history(self) -> list[tuple[PrivacyEvent, float, int]]:
        """The recorded ``(event, sample_rate, count)`` entries (grouped, in first-seen order)."""
        return [(PrivacyEvent(kind, dict(params)), q, c) for (kind, params, q), c in self._history.items()]

    @property  # type: ignore[misc]  # read-only here: counted from the history this class keeps
    def steps(self) -> int:
        """Total number of recorded steps."""
        return sum(self._history.values())

    def reset(self) -> None:
        """Forget every recorded step."""
        self._history = {}

    def copy(self) -> HistoryAccountant:
        """An independent accountant with the same options and history (caches shared: they key on the step)."""
        new = type(self)(self.params)
        new._history = dict(self._history)
        if hasattr(self, "_cache"):
            new._cache = self._cache  # type: ignore[attr-defined]
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
