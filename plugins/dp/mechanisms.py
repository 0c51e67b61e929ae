"""Noise mechanisms: ``dp.gaussian``, ``dp.laplace``, ``dp.ada-gaussian`` (decaying noise), ``dp.vmf`` (directional).

Every mechanism owns its schedule and reports, through ``event(step)``, exactly what it ran at
that step, so an accountant charges ``mechanism.event(step)`` and a schedule is configured once::

    mech = AdaGaussian(noise_multiplier=1.5, decay_policy="exp", noise_decay_rate=1e-4)
    noisy = mech.perturb(grad_sum, sensitivity=max_grad_norm, step=t)
    accountant.step(mech.event(t), sample_rate=q)
    accountant.extend((ev, q, c) for ev, c in mech.schedule(1000))   # or a whole run at once

Randomness: by default a generator seeded from ``seed`` (reproducible). ``secure_mode=True`` draws
every call's noise from a generator freshly seeded with OS entropy (``secrets``): numpy noise
from ``audit_sdk.secure_generator()`` (PCG64DXSM, 256-bit seed), torch noise from a
``torch.Generator`` seeded with 64 secret bits. Reseeding per call means an observer who learns the
generator state learns one call's noise at most. The generators themselves are not CSPRNGs; for
floating-point side channels (Mironov 2012) see the README. Cost: one OS entropy read and one
generator construction per call (a few microseconds).
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit_sdk import hookimpl
from audit_sdk.accounting import MAX_SCHEDULE_STEPS, gaussian_schedule
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Mechanism, PrivacyEvent
from audit_sdk.rng import as_generator, secure_generator

__all__ = ["AdaGaussian", "Gaussian", "Laplace", "VonMisesFisher", "decay_factors", "sample_vmf"]


def _is_torch(values: Any) -> bool:
    mod = type(values).__module__
    return mod.startswith("torch")


class _NoiseBase(Mechanism):
    """Generator handling shared by the built-in mechanisms."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        secure_mode: bool = False
        seed: int | None = Field(0, ge=0)

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._np_rng: np.random.Generator | None = None
        self._torch_gens: dict[str, Any] = {}

    def numpy_generator(self, rng: Any = None) -> np.random.Generator:
        """The generator for one numpy draw (secure, given, or the mechanism's own seeded one)."""
        if self.params.secure_mode:
            return secure_generator()
        if rng is not None:
            return as_generator(rng)
        if self._np_rng is None:
            self._np_rng = as_generator(self.params.seed)
        gen: np.random.Generator = self._np_rng
        return gen

    def torch_generator(self, device: Any, rng: Any = None) -> Any:
        """The torch.Generator for one draw on ``device``."""
        import torch

        if self.params.secure_mode:
            sg = torch.Generator(device=device)
            sg.manual_seed(secrets.randbits(64))
            return sg
        if isinstance(rng, torch.Generator):
            return rng
        key = str(device)
        g: Any = self._torch_gens.get(key)
        if g is None:
            g = torch.Generator(device=device)
            seed = self.params.seed if rng is None else int(as_generator(rng).integers(0, 2**63 - 1))
            g.manual_seed(int(seed) if seed is not None else secrets.randbits(63))
            self._torch_gens[key] = g
        return g

    def _add_gaussian(self, values: Any, std: float, rng: Any) -> Any:
        if std == 0:
            return values
        if _is_torch(values):
            import torch

            g = self.torch_generator(values.device, rng)
            return values + torch.normal(0.0, std, size=values.shape, generator=g, device=values.device, dtype=values.dtype)
        arr = np.asarray(values, dtype=float)
        return arr + self.numpy_generator(rng).normal(0.0, std, size=arr.shape)

    def _add_laplace(self, values: Any, scale: float, rng: Any) -> Any:
        if scale == 0:
            return values
        if _is_torch(values):
            import torch

            g = self.torch_generator(values.device, rng)
            # inverse CDF of Laplace from uniforms drawn with our generator (torch's Laplace has no generator argument)
            u = torch.rand(values.shape, generator=g, device=values.device, dtype=torch.float64) - 0.5
            noise = -scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())
            return values + noise.to(values.dtype)
        arr = np.asarray(values, dtype=float)
        return arr + self.numpy_generator(rng).laplace(0.0, scale, size=arr.shape)

    @staticmethod
    def _check(sensitivity: float, step: int) -> None:
        if not (sensitivity >= 0) or math.isinf(sensitivity):
            raise InvalidParameterError(f"sensitivity must be a finite number >= 0; got {sensitivity!r}.")
        if int(step) != step or step < 0:
            raise InvalidParameterError(f"step must be a non-negative integer (0-based); got {step!r}.")


class Gaussian(_NoiseBase):
    """Gaussian mechanism: adds N(0, (noise_multiplier * sensitivity)^2) to every coordinate.

    noisy = Gaussian(noise_multiplier=1.1).perturb(x, sensitivity=1.0, step=0)
    """

    name = "dp.gaussian"
    summary = "Gaussian noise with a fixed noise multiplier (std = multiplier x L2 sensitivity)."

    class Params(_NoiseBase.Params):
        noise_multiplier: float = Field(1.0, ge=0, description="noise std / L2 sensitivity (0: no noise, no privacy)")

    params: Params

    def noise_multiplier_at(self, step: int) -> float:
        """The noise multiplier used at ``step``."""
        return float(self.params.noise_multiplier)

    def factors(self, steps: Any) -> np.ndarray:
        """sigma_t / sigma0 for each step (all ones: no schedule)."""
        return np.ones(np.shape(steps))

    def schedule(self, steps: int, *, resolution: float = 0.0, max_distinct: int | None = None) -> list[tuple[PrivacyEvent, int]]:
        """The events of steps 0 .. steps - 1, grouped (vectorised over the schedule's ``factors``; see ``Mechanism.schedule``).

        Raises:
            InvalidParameterError: a negative number of steps, or more than ``MAX_SCHEDULE_STEPS``.
        """
        if int(steps) != steps or steps < 0:
            raise InvalidParameterError(f"steps must be a non-negative integer; got {steps!r}.")
        if steps > MAX_SCHEDULE_STEPS:
            raise InvalidParameterError(
                f"a schedule over {steps} steps is too long to expand (at most {MAX_SCHEDULE_STEPS}); use fewer steps."
            )
        sigmas = float(self.params.noise_multiplier) * np.asarray(self.factors(np.arange(int(steps))), dtype=float)
        return gaussian_schedule(sigmas, resolution=resolution, max_distinct=max_distinct)

    def with_noise_multiplier(self, noise_multiplier: float) -> Gaussian:
        """A copy with another (initial) noise multiplier, same schedule and randomness options."""
        return type(self)(self.params.model_copy(update={"noise_multiplier": float(noise_multiplier)}))

    def perturb(self, values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
        self._check(sensitivity, step)
        return self._add_gaussian(values, self.noise_multiplier_at(step) * float(sensitivity), rng)

    def event(self, step: int) -> PrivacyEvent:
        return PrivacyEvent("gaussian", {"noise_multiplier": self.noise_multiplier_at(step)})


def decay_factors(policy: str, rate: float, steps: Any) -> np.ndarray:
    """sigma_t / sigma0 of MindArmour's adaptive-decay schedules, in closed form.

    ``time``: 1 / (1 + r t); ``step``: (1 - r)^t; ``exp``: exp(-r t). They equal MindArmour's
    per-step updates sigma <- sigma0 / (sigma0 / sigma + r), sigma <- (1 - r) sigma, sigma <- sigma / e^r
    applied after each step's noise, starting from sigma0 at step 0.
    """
    t = np.asarray(steps, dtype=float)
    if policy == "time":
        return 1.0 / (1.0 + rate * t)
    if policy == "step":
        return np.power(1.0 - rate, t)
    if policy == "exp":
        return np.exp(-rate * t)
    raise InvalidParameterError(f"decay_policy must be 'time', 'step' or 'exp'; got {policy!r}.")


class AdaGaussian(Gaussian):
    """Adaptive-decay Gaussian noise (MindArmour's ``NoiseAdaGaussianRandom``): sigma decays with the step.

        mech = AdaGaussian(noise_multiplier=2.0, decay_policy="time", noise_decay_rate=6e-4)
        mech.noise_multiplier_at(1000)   # 2.0 / (1 + 0.6)

    The accountant charges ``event(step)``, which carries the decayed multiplier, so the
    schedule is never configured twice (MindArmour sets mechanism and monitor separately, with
    different defaults).
    """

    name = "dp.ada-gaussian"
    summary = "Gaussian noise whose multiplier decays per step: time 1/(1+rt), step (1-r)^t, exp e^(-rt)."

    class Params(Gaussian.Params):
        decay_policy: Literal["time", "step", "exp"] = Field("exp", description="MindArmour's Time / Step / Exp")
        noise_decay_rate: float = Field(6e-6, ge=0, le=1, description="decay rate r in [0, 1] (MindArmour's range)")

        @field_validator("decay_policy", mode="before")
        @classmethod
        def _lower(cls, v: Any) -> Any:
            return v.lower() if isinstance(v, str) else v

        @model_validator(mode="after")
        def _step_rate(self) -> AdaGaussian.Params:
            if self.decay_policy == "step" and self.noise_decay_rate >= 1:
                raise ValueError("decay_policy 'step' with noise_decay_rate 1 removes all noise after step 0; use a rate < 1")
            return self

    params: Params

    def factors(self, steps: Any) -> np.ndarray:
        return decay_factors(self.params.decay_policy, self.params.noise_decay_rate, steps)

    def noise_multiplier_at(self, step: int) -> float:
        return float(self.params.noise_multiplier * self.factors(step))


class Laplace(_NoiseBase):
    """Laplace mechanism: adds Laplace(0, noise_multiplier * L1 sensitivity); epsilon = 1 / noise_multiplier per step.

    noisy = Laplace(noise_multiplier=2.0).perturb(counts, sensitivity=1.0, step=0)
    """

    name = "dp.laplace"
    summary = "Laplace noise, scale = multiplier x L1 sensitivity (pure epsilon = 1 / multiplier)."

    class Params(_NoiseBase.Params):
        noise_multiplier: float = Field(1.0, ge=0, description="Laplace scale / L1 sensitivity")

    params: Params

    def perturb(self, values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
        self._check(sensitivity, step)
        return self._add_laplace(values, float(self.params.noise_multiplier) * float(sensitivity), rng)

    def event(self, step: int) -> PrivacyEvent:
        return PrivacyEvent("laplace", {"scale": float(self.params.noise_multiplier)})


def sample_vmf(mu: np.ndarray, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """Draw one von Mises-Fisher sample per row of unit vectors ``mu`` (n, d), vectorised.

    Wood (1994), "Simulation of the von Mises Fisher distribution": the cosine w = <x, mu> by
    rejection from a Beta proposal (rounds over the rejected rows only, no per-sample loop), then a
    uniform direction orthogonal to mu.
    """
    mu = np.atleast_2d(np.asarray(mu, dtype=float))
    n, d = mu.shape
    if d < 2:
        raise InvalidParameterError(f"vMF needs dimension >= 2; got {d}.")
    dim = d - 1.0
    if kappa == 0:
        x = rng.standard_normal((n, d))
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    # b computed in the cancellation-free form of Wood's (-2k + sqrt(4k^2 + dim^2)) / dim
    b = dim / (math.sqrt(4.0 * kappa**2 + dim**2) + 2.0 * kappa)
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + dim * math.log(1.0 - x0**2)
    w = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        z = rng.beta(dim / 2.0, dim / 2.0, size=todo.size)
        cand = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = rng.random(todo.size)
        ok = kappa * cand + dim * np.log1p(-x0 * cand) - c >= np.log(u)
        w[todo[ok]] = cand[ok]
        todo = todo[~ok]
    v = rng.standard_normal((n, d))
    v -= np.sum(v * mu, axis=1, keepdims=True) * mu
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return w[:, None] * mu + np.sqrt(np.clip(1.0 - w**2, 0.0, None))[:, None] * v


class VonMisesFisher(_NoiseBase):
    """Directional noise: resample each vector's direction from vMF(direction, kappa = epsilon), keep its norm.

    Accounting statement (Weggenmann & Kerschbaum 2021, "Differential privacy for directional
    data", Thm. 7; Faustini et al. 2023, "Directional privacy for deep learning"): the vMF
    mechanism with concentration kappa is epsilon*d2-private on the unit sphere with epsilon = kappa:
    for directions u, u' and any output set S, P[M(u) in S] <= exp(epsilon * ||u - u'||_2) P[M(u') in S].
    Since ||u - u'|| <= 2, each step is pure (2 epsilon)-DP with respect to replacing one vector's
    direction, and that is what ``event`` reports (``max_distance`` = 2) and what the accountants
    charge. The norm is released unchanged, so it is not protected; clip or normalise vectors to
    a common norm first if it may leak. Rows of a 2-D input are perturbed independently; a 1-D
    input is one vector. ``sensitivity`` does not scale the noise (directions carry no scale).

        noisy = VonMisesFisher(epsilon=50.0).perturb(per_sample_grads, sensitivity=1.0, step=0)
    """

    name = "dp.vmf"
    summary = "von Mises-Fisher directional noise keeping the norm (epsilon*d metric privacy)."

    class Params(_NoiseBase.Params):
        epsilon: float = Field(10.0, gt=0, description="metric-privacy epsilon = vMF concentration kappa")

    params: Params

    def perturb(self, values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
        self._check(sensitivity, step)
        torch_in = _is_torch(values)
        if torch_in:
            import torch

            arr = values.detach().cpu().double().numpy()
        else:
            arr = np.asarray(values, dtype=float)
        flat = arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(arr.shape[0], -1)
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        safe = np.where(norms > 0, norms, 1.0)
        gen = self.numpy_generator(rng)
        out = sample_vmf(flat / safe, float(self.params.epsilon), gen) * norms
        out = out.reshape(arr.shape)
        if torch_in:
            return torch.as_tensor(out, dtype=values.dtype, device=values.device)
        return out

    def event(self, step: int) -> PrivacyEvent:
        return PrivacyEvent("vmf", {"epsilon": float(self.params.epsilon), "max_distance": 2.0})


@hookimpl
def register_mechanisms() -> list[type[Mechanism]]:
    return [Gaussian, AdaGaussian, Laplace, VonMisesFisher]
