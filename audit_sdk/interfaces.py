"""The four plugin interfaces: Mechanism, Accountant, Defense and Attack.

Every component class has a unique kebab-case ``name`` namespaced by family (``mia.lira``,
``dp.ada-gaussian``, ``defense.dp-sgd``, ``acct.rdp``), a one-line ``summary`` and a pydantic
``Params`` model with ``extra="forbid"`` that validates and documents its options::

    attack = LossThreshold(calibration="per-class")      # keyword options
    attack = LossThreshold({"calibration": "per-class"})  # or a mapping (from a config file)

The core never imports a framework; plugins ask a Target (see ``audit_sdk.target``) for what they
need, and training-time defenses receive a framework-specific ``TrainContext`` from the adapter's
Trainer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InvalidParameterError

if TYPE_CHECKING:
    from .context import RunContext
    from .data import AuditData
    from .results import AttackResult
    from .target import Target

__all__ = [
    "ACCESS_LEVELS",
    "Accountant",
    "Attack",
    "Component",
    "Defense",
    "Mechanism",
    "PrivacyEvent",
    "format_validation_error",
]

#: Access levels an Attack may declare, from least to most demanding.
ACCESS_LEVELS: tuple[str, ...] = ("label-only", "black-box", "white-box", "gradients", "training", "sequence")

#: Defense perturbation points (DP-UTIL taxonomy).
PERTURBATION_POINTS: tuple[str, ...] = ("input", "objective", "gradient", "parameters", "output")


def format_validation_error(owner: str, exc: ValidationError) -> str:
    """Render a pydantic ValidationError as one line per problem, naming the field path."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown option {loc!r}")
        else:
            parts.append(f"{loc}: {err.get('msg')} (got {err.get('input')!r})")
    return f"invalid options for {owner}: " + "; ".join(parts)


class Component(ABC):
    """Base of every plugin class: a name, a summary, validated ``Params``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Family of the component; set by each interface.
    kind: ClassVar[str] = "component"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    params: BaseModel

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **options: Any) -> None:
        self.params = self.parse_params(params, **options)

    @classmethod
    def parse_params(cls, params: BaseModel | Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Validate options into this class's ``Params``.

        Raises:
            InvalidParameterError: naming every unknown option or bad value at once.
        """
        if isinstance(params, cls.Params):
            if options:
                return params.model_copy(update=options)
            return params
        if params is not None and not isinstance(params, Mapping):
            raise InvalidParameterError(f"{cls.name}: params must be a mapping or {cls.__name__}.Params; got {type(params).__name__}.")
        merged = {**dict(params or {}), **options}
        try:
            return cls.Params(**merged)
        except ValidationError as exc:
            raise InvalidParameterError(
                format_validation_error(cls.name, exc) + f". See `audit-sdk plugins` for {cls.name}'s options."
            ) from exc

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        """JSON Schema of ``Params`` (shown by ``audit-sdk plugins``)."""
        return cls.Params.model_json_schema()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


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


class Mechanism(Component):
    """A noise or perturbation mechanism.

    A mechanism owns its schedule (e.g. a decaying noise multiplier), perturbs values given a
    sensitivity and a step, and reports the event it ran at that step, so an accountant charges
    exactly what ran and a schedule is never configured twice.
    """

    kind: ClassVar[str] = "mechanism"

    @abstractmethod
    def perturb(self, values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
        """Return ``values`` perturbed for the given L2 (or L1) ``sensitivity`` at ``step``.

        ``values`` is a numpy array or a torch tensor; the result has the same type and shape.
        """

    @abstractmethod
    def event(self, step: int) -> PrivacyEvent:
        """The privacy event of ``step`` (0-based), as the accountant must charge it."""


class Accountant(Component):
    """Composes privacy loss over steps and converts it to (epsilon, delta).

    Records each step as (event, sample_rate, count); answers ``epsilon(delta)`` and
    ``delta(epsilon)``; calibrates a noise multiplier for a target.
    """

    kind: ClassVar[str] = "accountant"

    @abstractmethod
    def step(self, event: PrivacyEvent, *, sample_rate: float, count: int = 1) -> None:
        """Record ``count`` applications of ``event`` on Poisson-subsampled batches of rate ``sample_rate``."""

    @abstractmethod
    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at the given delta."""

    @abstractmethod
    def delta(self, epsilon: float) -> float:
        """Delta at the given epsilon for what was spent so far."""


class Defense(Component):
    """Changes how a model is trained or served, at one or more perturbation points.

    ``points`` names where it acts: ``input`` (data morphing), ``objective``, ``gradient`` (DP-SGD),
    ``parameters`` (suppress masking), ``output`` (rounding, top-k, label-only, noisy outputs).
    Output defenses implement ``wrap_target``; training-time defenses implement the ``on_*`` and
    ``compute_gradients`` callbacks that an adapter's Trainer calls with its ``TrainContext``.
    Every method has a do-nothing default, so a defense implements only its own points.
    """

    kind: ClassVar[str] = "defense"
    points: ClassVar[tuple[str, ...]] = ()

    def transform_data(self, x: Any, y: Any, *, rng: Any = None) -> tuple[Any, Any]:
        """Input point: return the data the model is trained on (default: unchanged)."""
        return x, y

    def wrap_target(self, target: Target) -> Target:
        """Output point: return a Target that serves defended outputs (default: unchanged)."""
        return target

    def on_train_begin(self, ctx: Any) -> None:
        """Called once by the Trainer before the first step (set up state, validate the model)."""

    def compute_gradients(self, ctx: Any, batch: Any) -> bool:
        """Gradient point: fill ``.grad`` of the model's parameters for ``batch``.

        Return True if handled; False lets the Trainer do a plain backward pass. At most one
        active defense may handle gradients.
        """
        return False

    def on_step_end(self, ctx: Any) -> None:
        """Called after each optimizer step (e.g. to mask parameters)."""

    def on_train_end(self, ctx: Any) -> dict[str, Any]:
        """Called once after training; return figures for the report (epsilon spent, sparsity, ...)."""
        return {}


Access = Literal["label-only", "black-box", "white-box", "gradients", "training", "sequence"]


class Attack(Component):
    """Reads a Target and AuditData and returns an AttackResult.

    ``access`` declares what the attack needs from the target: ``label-only`` (predicted labels),
    ``black-box`` (probabilities), ``white-box`` (a torch model: gradients, representations),
    ``gradients`` (a shared gradient, e.g. federated learning), ``training`` (the architecture is
    re-initialised and trained again, e.g. a DP audit with canaries), ``sequence`` (per-token
    log-probabilities of a causal language model, ``audit_sdk.sequence``). The pipeline refuses a
    mismatch and names an attack that would fit.
    """

    kind: ClassVar[str] = "attack"
    access: ClassVar[str] = "black-box"
    #: What the result carries: ``membership`` scores or ``reconstruction`` images.
    result_kind: ClassVar[str] = "membership"

    def check(self, target: Target, data: AuditData) -> list[str]:
        """Problems that would stop this attack on ``target`` and ``data``, found without running it.

        The pipeline calls it for every attack before any attack runs, and reports every problem
        at once (e.g. "needs population data"). Cheap checks only; the default finds none. Raising a
        typed ``AuditSDKError`` instead is accepted too (it counts as one problem).
        """
        return []

    @abstractmethod
    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: RunContext | None = None) -> AttackResult:
        """Attack ``target`` on ``data`` and return the per-sample result.

        Args:
            target: what the attacker can query.
            data: members, non-members and (optionally) population data.
            rng: seed or Generator; a seeded run repeats exactly.
            context: shared resources of the run (cache directory, executor, hooks, progress);
                attacks must work with ``None`` too.
        """
