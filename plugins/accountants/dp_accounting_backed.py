"""``acct.dp-accounting``: every event kind Google's dp_accounting supports, through its RDP or PLD accountant.

The project's own accountants (acct.pld, acct.rdp) stay the fast path for DP-SGD; this one gives the
long tail of mechanisms without hand-written maths. ``dp_accounting`` is imported lazily, so
``import audit_sdk`` and ``audit-sdk plugins`` work without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import hookimpl
from audit_sdk.errors import BackendUnavailableError, InvalidParameterError
from audit_sdk.interfaces import Accountant, PrivacyEvent

__all__ = ["DPAccountingAccountant", "EVENT_KINDS", "to_dp_event"]

#: event kind -> (required params, optional params); nested events are PrivacyEvents or {"kind": ..., ...} mappings
EVENT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gaussian": (("noise_multiplier",), ()),
    "laplace": (("scale",), ()),
    "randomized-response": (("noise_parameter", "num_buckets"), ()),
    "discrete-laplace": (("noise_parameter",), ("sensitivity",)),
    "discrete-gaussian": (("sigma",), ("sensitivity",)),
    "zcdp": (("rho",), ("xi",)),
    "exponential": (("epsilon",), ()),
    "permute-and-flip": (("epsilon",), ()),
    "pure": (("epsilon",), ()),
    "tree-aggregation": (("noise_multiplier", "step_counts"), ()),
    "repeat-and-select": (("event", "mean", "shape"), ()),
    "mixture-of-gaussians": (("standard_deviation", "sensitivities", "sampling_probs"), ()),
    "truncated-subsampled-gaussian": (("dataset_size", "sampling_probability", "truncated_batch_size", "noise_multiplier"), ()),
    "sampled-without-replacement": (("source_dataset_size", "sample_size", "event"), ()),
    "poisson-sampled": (("sampling_probability", "event"), ()),
    "composed": (("events",), ()),
    "self-composed": (("event", "count"), ()),
    "none": ((), ()),
}

_NEIGHBORS = {"add-or-remove": "ADD_OR_REMOVE_ONE", "replace-one": "REPLACE_ONE", "replace-special": "REPLACE_SPECIAL"}


def _import() -> Any:
    try:
        from dp_accounting import dp_event
    except ImportError as exc:
        raise BackendUnavailableError('acct.dp-accounting needs the dp-accounting package: pip install "dp-accounting>=0.4"') from exc
    return dp_event


def as_event(spec: PrivacyEvent | Mapping[str, Any]) -> PrivacyEvent:
    """A PrivacyEvent from itself or from a mapping ``{"kind": ..., **params}``."""
    if isinstance(spec, PrivacyEvent):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str):
        return PrivacyEvent(str(spec["kind"]), {k: v for k, v in spec.items() if k != "kind"})
    raise InvalidParameterError(f"expected a PrivacyEvent or a mapping with a 'kind'; got {spec!r}.")


def _validate(event: PrivacyEvent, depth: int = 0) -> None:
    if depth > 8:
        raise InvalidParameterError("events nest more than 8 levels deep.")
    if event.kind not in EVENT_KINDS:
        raise InvalidParameterError(f"acct.dp-accounting: unknown event kind {event.kind!r}; expected one of {sorted(EVENT_KINDS)}.")
    req, opt = EVENT_KINDS[event.kind]
    missing = [p for p in req if p not in event.params]
    extra = [p for p in event.params if p not in req and p not in opt]
    if missing or extra:
        raise InvalidParameterError(
            f"acct.dp-accounting: {event.kind} event needs {list(req)} (optional {list(opt)}); missing {missing}, unknown {extra}."
        )
    params: dict[str, Any] = dict(event.params)
    for k, v in params.items():
        if k in ("event",):
            _validate(as_event(v), depth + 1)
        elif k == "events":
            if not isinstance(v, (list, tuple)) or not v:
                raise InvalidParameterError(f"acct.dp-accounting: composed 'events' must be a non-empty list; got {v!r}.")
            for e in v:
                _validate(as_event(e), depth + 1)
        elif k in ("step_counts", "sensitivities", "sampling_probs"):
            vals = v if isinstance(v, (list, tuple)) else [v]
            if not vals or not all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in vals):
                raise InvalidParameterError(f"acct.dp-accounting: {event.kind} {k} must be finite numbers >= 0; got {v!r}.")
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) or v < 0:
            raise InvalidParameterError(f"acct.dp-accounting: {event.kind} {k} must be a number >= 0; got {v!r}.")


def to_dp_event(event: PrivacyEvent | Mapping[str, Any], *, backend: str = "pld") -> Any:
    """The dp_accounting ``DpEvent`` of a PrivacyEvent (pure-DP kinds map per backend; see the class docstring)."""
    dpa = _import()
    ev = as_event(event)
    p: dict[str, Any] = dict(ev.params)
    k = ev.kind
    sub = lambda: to_dp_event(p["event"], backend=backend)  # noqa: E731 - nested event
    if k == "gaussian":
        return dpa.GaussianDpEvent(float(p["noise_multiplier"]))
    if k == "laplace":
        return dpa.LaplaceDpEvent(float(p["scale"]))
    if k == "randomized-response":
        return dpa.RandomizedResponseDpEvent(float(p["noise_parameter"]), int(p["num_buckets"]))
    if k == "discrete-laplace":
        return dpa.DiscreteLaplaceDpEvent(float(p["noise_parameter"]), int(p.get("sensitivity", 1)))
    if k == "zcdp":
        return dpa.ZCDpEvent(float(p["rho"]), float(p.get("xi", 0.0)))
    if k in ("exponential", "permute-and-flip", "pure"):
        eps = float(p["epsilon"])
        # Exponential mechanism: eps-bounded range, hence eps^2/8-zCDP (Cesar & Rogers 2021, bounded range);
        # any eps-DP mechanism (permute-and-flip, pure): eps^2/2-zCDP (Bun & Steinke 2016, Prop. 1.4).
        # The PLD backend instead uses the exact worst case of an eps-DP mechanism (see _extra_pld).
        return dpa.ZCDpEvent(eps * eps / 8 if k == "exponential" else eps * eps / 2)
    if k == "tree-aggregation":
        sc = p["step_counts"]
        return dpa.SingleEpochTreeAggregationDpEvent(
            float(p["noise_multiplier"]), [int(x) for x in sc] if isinstance(sc, (list, tuple)) else int(sc)
        )
    if k == "repeat-and-select":
        return dpa.RepeatAndSelectDpEvent(sub(), float(p["mean"]), float(p["shape"]))
    if k == "mixture-of-gaussians":
        return dpa.MixtureOfGaussiansDpEvent(
            float(p["standard_deviation"]), [float(x) for x in p["sensitivities"]], [float(x) for x in p["sampling_probs"]]
        )
    if k == "truncated-subsampled-gaussian":
        return dpa.TruncatedSubsampledGaussianDpEvent(
            int(p["dataset_size"]), float(p["sampling_probability"]), int(p["truncated_batch_size"]), float(p["noise_multiplier"])
        )
    if k == "sampled-without-replacement":
        return dpa.SampledWithoutReplacementDpEvent(int(p["source_dataset_size"]), int(p["sample_size"]), sub())
    if k == "poisson-sampled":
        return dpa.PoissonSampledDpEvent(float(p["sampling_probability"]), sub())
    if k == "composed":
        return dpa.ComposedDpEvent([to_dp_event(e, backend=backend) for e in p["events"]])
    if k == "self-composed":
        return dpa.SelfComposedDpEvent(sub(), int(p["count"]))
    if k == "none":
        return dpa.NonPrivateDpEvent()
    raise InvalidParameterError(
        f"acct.dp-accounting: event kind {k!r} has no dp_accounting event (use it on its own: {sorted(EVENT_KINDS)})."
    )


class DPAccountingAccountant(Accountant):
    """Accountant backed by Google's dp_accounting (RDP or PLD), for every event kind it supports.

        acct = DPAccountingAccountant(backend="pld")
        acct.step(PrivacyEvent("randomized-response", {"noise_parameter": 0.5, "num_buckets": 10}), sample_rate=1.0)
        acct.epsilon(1e-6)

    Kinds (``EVENT_KINDS``): gaussian, laplace, randomized-response (k-ary), discrete-laplace,
    discrete-gaussian (PLD backend only), zcdp (RDP backend), exponential and permute-and-flip (PLD: the
    exact worst case of an epsilon-DP mechanism; RDP: zCDP bounds), tree-aggregation, repeat-and-select
    (RDP), mixture-of-gaussians, truncated-subsampled-gaussian (PLD), sampled-without-replacement
    (RDP, ``neighboring="replace-one"``), and composites: poisson-sampled, composed, self-composed. A step
    with ``sample_rate`` < 1 is wrapped in Poisson sampling. dp_accounting refuses a kind its backend
    or neighbouring relation cannot account; the error names the alternative.
    """

    name = "acct.dp-accounting"
    summary = "dp_accounting (Google) RDP or PLD: every event kind it supports (RR, discrete, zCDP, tree, mixtures, ...)."
    is_upper_bound: ClassVar[bool] = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        backend: Literal["auto", "pld", "rdp"] = Field(
            "auto", description="dp_accounting's PLD (tight) or RDP accountant; auto: PLD when it supports every event, else RDP"
        )
        neighboring: Literal["add-or-remove", "replace-one", "replace-special"] = Field(
            "add-or-remove", description="neighbouring relation (replace-one for sampling without replacement)"
        )
        value_discretization_interval: float = Field(1e-4, gt=0, le=1.0, description="PLD grid spacing (PLD backend)")

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._history: list[tuple[PrivacyEvent, float, int]] = []

    def step(self, event: PrivacyEvent | Mapping[str, Any], *, sample_rate: float = 1.0, count: int = 1) -> None:  # type: ignore[override]
        """Record ``count`` applications of ``event``, Poisson-sampled at ``sample_rate`` when < 1.

        Raises:
            InvalidParameterError: an unknown kind, missing or bad parameters, a sample rate outside [0, 1].
        """
        ev = as_event(event)
        _validate(ev)
        q = float(sample_rate)
        if not (0.0 <= q <= 1.0):
            raise InvalidParameterError(f"sample_rate must be in [0, 1]; got {sample_rate!r}.")
        if int(count) != count or count < 0:
            raise InvalidParameterError(f"count must be a non-negative integer; got {count!r}.")
        if count and q > 0:
            self._history.append((ev, q, int(count)))

    @property
    def history(self) -> list[tuple[PrivacyEvent, float, int]]:
        """The recorded ``(event, sample_rate, count)`` entries, in order (its own: events arrive as mappings too)."""
        return list(self._history)

    @property  # type: ignore[misc]  # read-only here: counted from the history this class keeps
    def steps(self) -> int:
        return sum(c for _e, _q, c in self._history)

    def reset(self) -> None:
        """Forget every recorded step."""
        self._history = []

    def describe(self) -> dict[str, Any]:
        return {"accountant": self.name, "certified": True, "options": self.params.model_dump(), "steps": self.steps}

    def _accountant(self) -> Any:
        _import()  # a missing dp_accounting is a BackendUnavailableError naming the install
        from dp_accounting import NeighboringRelation
        from dp_accounting import pld as dpa_pld
        from dp_accounting import rdp as dpa_rdp

        rel = getattr(NeighboringRelation, _NEIGHBORS[self.params.neighboring])
        backend = self.params.backend
        if backend == "auto":
            probe = dpa_pld.PLDAccountant(neighboring_relation=rel)
            pld_ok = all(
                ev.kind == "discrete-gaussian"
                or (ev.kind in ("exponential", "permute-and-flip", "pure") and q >= 1.0)
                or probe.supports(self._wrapped(ev, q, "pld"))
                for ev, q, _c in self._history
            )
            backend = "pld" if pld_ok else "rdp"
        if backend == "rdp":
            acct = dpa_rdp.RdpAccountant(neighboring_relation=rel)
        else:
            acct = dpa_pld.PLDAccountant(neighboring_relation=rel, value_discretization_interval=self.params.value_discretization_interval)
        self.backend_ = backend
        for ev, q, c in self._history:
            extra = self._extra_pld(ev, q, backend)
            if extra is not None:
                # kinds without a DpEvent: compose their PLD directly (pld backend)
                acct._pld = acct._pld.compose(extra.self_compose(c))  # noqa: SLF001 - dp_accounting has no public hook
                continue
            dp_ev = self._wrapped(ev, q, backend)
            try:
                acct.compose(dp_ev, c)
            except Exception as exc:  # dp_accounting raises its own UnsupportedEventError / ValueError
                other = "rdp" if backend == "pld" else "pld"
                raise InvalidParameterError(
                    f"acct.dp-accounting ({backend}, {self.params.neighboring}) cannot account a {ev.kind} "
                    f"event{' sampled at rate ' + format(q, 'g') if q < 1 else ''}: {str(exc).rstrip('.')}. Try backend={other!r} "
                    "or another neighboring relation."
                ) from exc
        return acct

    @staticmethod
    def _wrapped(ev: PrivacyEvent, q: float, backend: str) -> Any:
        dp_ev = to_dp_event(ev, backend=backend)
        return _import().PoissonSampledDpEvent(q, dp_ev) if q < 1.0 else dp_ev

    def _extra_pld(self, ev: PrivacyEvent, q: float, backend: str) -> Any:
        """A dp_accounting PLD for kinds without a DpEvent (PLD backend), else None."""
        if backend != "pld" or ev.kind not in ("discrete-gaussian", "exponential", "permute-and-flip", "pure"):
            if ev.kind == "discrete-gaussian":
                raise InvalidParameterError("acct.dp-accounting: discrete-gaussian events need backend='pld'.")
            return None
        from dp_accounting.pld import common
        from dp_accounting.pld import privacy_loss_distribution as pl

        p = dict(ev.params)
        iv = self.params.value_discretization_interval
        if ev.kind == "discrete-gaussian":
            return pl.from_discrete_gaussian_mechanism(
                float(p["sigma"]), sensitivity=int(p.get("sensitivity", 1)), sampling_prob=q, value_discretization_interval=iv
            )
        if q < 1.0:
            raise InvalidParameterError(f"acct.dp-accounting: a subsampled {ev.kind} event needs backend='rdp'.")
        # the worst case of any eps-DP mechanism (Kairouz, Oh, Viswanath 2015)
        return pl.from_privacy_parameters(common.DifferentialPrivacyParameters(float(p["epsilon"]), 0.0), value_discretization_interval=iv)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta``."""
        if not (0.0 < float(delta) < 1.0):
            raise InvalidParameterError(f"delta must be in (0, 1); got {delta!r}.")
        if not self._history:
            return 0.0
        return float(self._accountant().get_epsilon(float(delta)))

    def delta(self, epsilon: float) -> float:
        """Delta at ``epsilon`` for what was spent so far."""
        if not (float(epsilon) >= 0.0):
            raise InvalidParameterError(f"epsilon must be >= 0; got {epsilon!r}.")
        if not self._history:
            return 0.0
        return float(self._accountant().get_delta(float(epsilon)))


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [DPAccountingAccountant]
