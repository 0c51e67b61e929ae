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

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from . import accounting
from .accounting import PrivacyEvent, Step, event_key, group_events
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


class Mechanism(Component):
    """A noise or perturbation mechanism.

    A mechanism owns its schedule (e.g. a decaying noise multiplier), perturbs values given a
    sensitivity and a step, and reports the event it ran at that step, so an accountant charges
    exactly what ran and a schedule is never configured twice::

        for event, count in mechanism.schedule(steps):
            accountant.step(event, sample_rate=q, count=count)
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

    def schedule(self, steps: int, *, resolution: float = 0.0, max_distinct: int | None = None) -> list[tuple[PrivacyEvent, int]]:
        """The events of steps ``0 .. steps - 1``, grouped as ``(event, count)``.

        The default asks ``event(t)`` for every step and groups equal events
        (``audit_sdk.accounting.group_events``); a mechanism with long schedules overrides it with a
        vectorised one (``dp.gaussian`` does). ``resolution`` and ``max_distinct`` round Gaussian
        noise multipliers down onto a geometric grid so a decaying schedule has few distinct
        events (conservative: less noise can only charge more).

        Raises:
            InvalidParameterError: a negative or non-integer number of steps.
        """
        if int(steps) != steps or steps < 0:
            raise InvalidParameterError(f"steps must be a non-negative integer; got {steps!r}.")
        return group_events((self.event(t) for t in range(int(steps))), resolution=resolution, max_distinct=max_distinct)


def _recording(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an accountant's ``step`` so the ABC's default ``history`` records what it accepted."""
    signature = inspect.signature(step)

    @functools.wraps(step)
    def recorded(self: Accountant, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__
        depth = state.get("_step_depth", 0)
        state["_step_depth"] = depth + 1
        try:
            out = step(self, *args, **kwargs)
        finally:
            state["_step_depth"] = depth
        if depth == 0:  # a step that calls super().step() is recorded once
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            self._record(a["event"], float(a.get("sample_rate", 1.0)), int(a.get("count", 1)))
        return out

    recorded._records_history = True  # type: ignore[attr-defined]
    return recorded


class Accountant(Component):
    """Composes privacy loss over steps and converts it to (epsilon, delta).

    A subclass implements ``step``, ``epsilon`` and ``delta``; everything callers use beyond
    those has a default here, so a third-party accountant works in every command (``audit-sdk
    epsilon``, ``calibrate``, DP-SGD, ``audit.dp``)::

        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 1.1}), sample_rate=0.01, count=1000)
        acct.history                 # [(event, 0.01, 1000)]
        acct.copy().epsilon(1e-5)    # a fresh accountant charged with the same steps
        acct.calibrate(target_epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=1000)

    The history is recorded by the ABC, not asked of each accountant: ``__init_subclass__`` wraps
    a subclass's ``step`` so every accepted step (one that did not raise) is kept as
    ``(event, sample_rate, count)``, grouped. Recording beside the step, rather than asking
    subclasses to call a helper, means a minimal accountant cannot forget it, and replaying the
    history into a new instance (``copy``) rebuilds any internal state the subclass keeps, since
    the state came from those very steps. A class that keeps its own history (the built-ins, for
    caches of per-step curves) overrides ``history`` and is not wrapped; ``reset``, ``copy``,
    ``extend`` and the queries below work through the public methods either way.
    """

    kind: ClassVar[str] = "accountant"
    #: whether every answer is a proven upper bound (False for approximations such as GDP's CLT);
    #: calibration refuses an approximate accountant unless asked (``allow_approximate``)
    is_upper_bound: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if (
            step is not None
            and cls.history is Accountant.history  # type: ignore[comparison-overlap]
            and not getattr(step, "__isabstractmethod__", False)
            and not getattr(step, "_records_history", False)
        ):
            cls.step = _recording(step)  # type: ignore[method-assign]

    @abstractmethod
    def step(self, event: PrivacyEvent, *, sample_rate: float, count: int = 1) -> None:
        """Record ``count`` applications of ``event`` on Poisson-subsampled batches of rate ``sample_rate``."""

    @abstractmethod
    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at the given delta."""

    @abstractmethod
    def delta(self, epsilon: float) -> float:
        """Delta at the given epsilon for what was spent so far."""

    # -- history (defaults; see the class docstring) -----------------------------------------------
    def _record(self, event: PrivacyEvent, sample_rate: float, count: int) -> None:
        if count <= 0:
            return
        book: dict[Any, list[Any]] = self.__dict__.setdefault("_recorded", {})
        try:
            key: Any = (event_key(event), sample_rate)
            hit = book.get(key)
        except TypeError:  # unhashable parameters: kept apart
            key, hit = ("unhashable", len(book)), None
        if hit is None:
            book[key] = [event, sample_rate, count]
        else:
            hit[2] += count

    @property
    def history(self) -> list[Step]:
        """The recorded ``(event, sample_rate, count)`` entries, grouped, in first-seen order."""
        return [(e, q, c) for e, q, c in self.__dict__.get("_recorded", {}).values()]

    @property
    def steps(self) -> int:
        """Total number of recorded steps.

        An accountant written before this property existed may keep its own ``self.steps``
        counter; assigning it stores that value and reading it returns it, so such a class keeps
        working unchanged.
        """
        own = self.__dict__.get("_own_steps")
        if own is not None:
            return int(own)
        return sum(int(c) for _e, _q, c in self.history)

    @steps.setter
    def steps(self, value: int) -> None:
        self.__dict__["_own_steps"] = value

    def extend(self, steps: Iterable[Step]) -> Accountant:
        """Record several ``(event, sample_rate, count)`` entries; returns self."""
        for event, q, c in steps:
            self.step(event, sample_rate=q, count=c)
        return self

    def reset(self) -> None:
        """Forget every recorded step (the state of a new instance with the same options)."""
        fresh = type(self)(self.params)
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)

    def copy(self) -> Accountant:
        """An independent accountant with the same options, charged with the same history."""
        return type(self)(self.params).extend(self.history)

    # -- queries over the history ----------------------------------------------------------------
    def epsilon_if(self, steps: Iterable[Step], *, delta: float) -> float:
        """Epsilon after the recorded history plus ``steps``, without recording them."""
        return float(self.copy().extend(steps).epsilon(delta))

    def group_epsilon(self, delta: float, group_size: int) -> float:
        """Epsilon at ``delta`` for users contributing up to ``group_size`` records (``accounting.group_epsilon``)."""
        return accounting.group_epsilon(self, delta, group_size)

    def calibration_guess(self, build: Callable[[float], Iterable[Step]], *, target_epsilon: float, delta: float) -> float | None:
        """Where ``accounting.calibrate`` should start its search (None: no idea, start at 1).

        An accountant with a cheap, close estimate overrides it (acct.pld answers with RDP's
        calibration); the search itself, and its safe-side guarantee, stay the core's.
        """
        return None

    def calibrate(
        self,
        *,
        target_epsilon: float,
        delta: float,
        sample_rate: float,
        steps: int,
        mechanism: Mechanism | None = None,
        schedule: Callable[[Any], Any] | None = None,
        resolution: float = 1e-2,
        allow_approximate: bool = False,
    ) -> float:
        """Noise multiplier (or sigma0 of a decaying ``mechanism``) meeting (target_epsilon, delta).

        Shorthand for ``audit_sdk.accounting.calibrate_noise_multiplier(self, ...)``: the answer's
        epsilon is <= ``target_epsilon``; this accountant's own history is ignored.
        """
        return accounting.calibrate_noise_multiplier(
            self,
            target_epsilon=target_epsilon,
            delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            mechanism=mechanism,
            schedule=schedule,
            resolution=resolution,
            allow_approximate=allow_approximate,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: name, whether certified, options, total steps, grouped history."""
        return {
            "accountant": self.name,
            "certified": bool(self.is_upper_bound),
            "options": self.params.model_dump(),
            "steps": self.steps,
            "history": [{"event": e.kind, **dict(e.params), "sample_rate": q, "count": c} for e, q, c in self.history],
        }


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
