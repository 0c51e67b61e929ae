"""Output (prediction) defenses: they wrap any Target, so they protect an exported ONNX model too.

    defended = TopK(k=3).wrap_target(audit_sdk.load_target("model.onnx"))
    report = audit_sdk.run_audit(defended, data, attacks=["mia.loss-threshold"])

- ``defense.top-k``: serve only the k largest probabilities (Shokri et al. 2017, sec. VI);
- ``defense.rounding``: round probabilities to ``decimals`` digits (Fredrikson et al. 2015);
- ``defense.label-only``: serve the predicted label only (Choquette-Choo et al. 2021);
- ``defense.output-noise``: Laplace or Gaussian noise on the outputs, clipped and renormalised
  (prediction perturbation, as in Jia et al. 2019 and ART's ``GaussianNoise`` postprocessor).

Wrappers expose ``labels`` and, except label-only, ``probabilities``; never logits or white-box
access (the wrapped model's raw scores are what the defense hides).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import hookimpl
from audit_sdk.errors import AccessError
from audit_sdk.interfaces import Defense
from audit_sdk.rng import as_generator, secure_generator
from audit_sdk.target import Target, softmax

__all__ = ["DefendedTarget", "LabelOnly", "OutputNoise", "Rounding", "TopK"]


class DefendedTarget(Target):
    """A Target that serves ``defense.postprocess`` of another Target's probabilities.

    It delegates every query to ``inner`` and never exposes the inner model's logits, gradients or
    representations. ``predict_labels`` keeps the inner model's label unless the defense changes
    the served vector itself (output noise).
    """

    outputs_logits = False

    def __init__(self, inner: Target, defense: _OutputDefense) -> None:
        self.inner = inner
        self.defense = defense
        self.input_shape = tuple(inner.input_shape)
        self.input_dtype = inner.input_dtype
        self.input_names = inner.input_names
        self.n_classes = int(inner.n_classes)
        self.batch_size = int(inner.batch_size)
        self.capabilities = frozenset(defense.served_capabilities)
        missing = defense.needs - set(inner.capabilities)
        if missing:
            raise AccessError(
                f"{defense.name} needs {', '.join(sorted(missing))} from the wrapped model, which offers only "
                f"{', '.join(sorted(inner.capabilities))}; choose space='probabilities'."
            )

    def check_input(self, x: Any) -> np.ndarray:
        return self.inner.check_input(x)  # the inner model knows its inputs (named ones, dtypes, fixed shapes)

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        return self.defense.postprocess(self.inner, x)

    def predict_labels(self, x: Any) -> np.ndarray:
        if self.defense.label_from_output:
            return super().predict_labels(x)
        return self.inner.predict_labels(x)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"defense": self.defense.name, "defense_params": self.defense.params.model_dump(), "wraps": self.inner.describe()})
        return d


class _OutputDefense(Defense):
    """Base of the output defenses: ``postprocess`` maps a batch to the served vectors."""

    points = ("output",)
    #: capabilities of the wrapped target
    served_capabilities: frozenset[str] = frozenset({"labels", "probabilities"})
    #: capabilities the defense needs from the inner target
    needs: frozenset[str] = frozenset({"probabilities"})
    #: whether the served label is the argmax of the served vector (else the inner model's label)
    label_from_output = False

    def postprocess(self, inner: Target, x: np.ndarray) -> np.ndarray:
        """Return the served (n, n_classes) vectors for a validated batch ``x``."""
        return self.transform_scores(inner.predict_proba(x))

    def transform_scores(self, probs: np.ndarray) -> np.ndarray:
        """Apply the defense to a batch of probability vectors (n, n_classes)."""
        return np.asarray(probs, dtype=np.float64)

    def wrap_target(self, target: Target) -> Target:
        return DefendedTarget(target, self)

    @property
    def strength(self) -> float:
        """The defense's strength knob, for privacy-utility curves (see ``utility.py``)."""
        return float("nan")


class TopK(_OutputDefense):
    """Serve only the ``k`` largest probabilities; the others read 0.

        defended = TopK(k=1).wrap_target(target)   # the top-1 confidence only

    With ``renormalize=True`` the k kept values are rescaled to sum to 1 (top-1 then serves a
    one-hot vector, i.e. the label); by default they are served as the model computed them.
    """

    name = "defense.top-k"
    summary = "Serve only the k largest output probabilities (Shokri et al. 2017)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = Field(1, ge=1, description="number of probabilities kept per query")
        renormalize: bool = Field(False, description="rescale the kept values to sum to 1")

    params: Params

    def transform_scores(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        k = min(int(self.params.k), p.shape[1])
        # stable order: among equal scores the lower class index is kept, as argmax does
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        out = np.zeros_like(p)
        rows = np.arange(len(p))[:, None]
        out[rows, order] = p[rows, order]
        if self.params.renormalize:
            out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-300)
        return out

    @property
    def strength(self) -> float:
        return float(self.params.k)


class Rounding(_OutputDefense):
    """Round each probability to ``decimals`` decimal digits (ART's ``Rounded`` postprocessor).

    The served label stays the model's own (rounding may tie two classes at the top).
    """

    name = "defense.rounding"
    summary = "Round output probabilities to a number of decimals."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        decimals: int = Field(1, ge=0, le=15, description="decimal digits kept")

    params: Params

    def transform_scores(self, probs: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(probs, dtype=np.float64), int(self.params.decimals))

    @property
    def strength(self) -> float:
        return float(self.params.decimals)


class LabelOnly(_OutputDefense):
    """Serve the predicted label only: ``predict_proba``, ``loss`` and ``logits`` raise AccessError.

    Confidence-based attacks are refused up front by the audit (their access does not fit);
    label-only attacks (``mia.label-only``) still run.
    """

    name = "defense.label-only"
    summary = "Serve predicted labels only, no scores."
    served_capabilities = frozenset({"labels"})
    needs = frozenset({"labels"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    params: Params

    def postprocess(self, inner: Target, x: np.ndarray) -> np.ndarray:
        # a one-hot vector keeps Target's batching and checks working; it is never served as scores
        lab = inner.predict_labels(x)
        out = np.zeros((len(lab), inner.n_classes), dtype=np.float64)
        out[np.arange(len(lab)), lab] = 1.0
        return out


class OutputNoise(_OutputDefense):
    """Add Laplace or Gaussian noise to every served output, then clip and renormalise.

    ``space="probabilities"``: noise of scale ``scale`` on the probabilities, negative values
    clipped to 0, rows renormalised to sum to 1 (a row clipped to all zeros serves the uniform
    vector). ``space="logits"``: noise on the logits, then softmax (needs a target with logits).
    ``scale`` is the Laplace ``b`` or the Gaussian standard deviation. Every query draws fresh noise,
    so the served label (the argmax of the served vector) may differ from the model's.

    Fresh noise per query means an attacker who repeats a query can average it away (the noise
    shrinks as 1/sqrt(repeats)); rate-limit or cache answers when that matters.

    Noise comes from a cryptographically seeded generator (``audit_sdk.rng.secure_generator``)
    unless ``seed`` is given (reproducible, for experiments only: anyone who knows the seed can
    replay and subtract the noise).
    """

    name = "defense.output-noise"
    summary = "Laplace or Gaussian noise on the served outputs, renormalised."
    label_from_output = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mechanism: Literal["laplace", "gaussian"] = "laplace"
        scale: float = Field(0.1, ge=0.0, description="Laplace b or Gaussian sigma")
        space: Literal["probabilities", "logits"] = "probabilities"
        seed: int | None = Field(None, ge=0, description="None: cryptographically seeded noise; int: reproducible")

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self.generator = secure_generator() if self.params.seed is None else as_generator(self.params.seed)
        if self.params.space == "logits":
            self.needs = frozenset({"logits"})

    def _noise(self, shape: tuple[int, ...]) -> np.ndarray:
        b = float(self.params.scale)
        if b == 0.0:
            return np.zeros(shape)
        if self.params.mechanism == "laplace":
            return self.generator.laplace(0.0, b, size=shape)
        return self.generator.normal(0.0, b, size=shape)

    def postprocess(self, inner: Target, x: np.ndarray) -> np.ndarray:
        if self.params.space == "logits":
            z = np.asarray(inner.logits(x), dtype=np.float64)
            return softmax(z + self._noise(z.shape))
        return self.transform_scores(inner.predict_proba(x))

    def transform_scores(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        q = np.clip(p + self._noise(p.shape), 0.0, None)
        s = q.sum(axis=1, keepdims=True)
        uniform = np.full_like(q, 1.0 / q.shape[1])
        return np.where(s > 0, q / np.where(s > 0, s, 1.0), uniform)

    @property
    def strength(self) -> float:
        return float(self.params.scale)


@hookimpl
def register_defenses() -> list[type[Defense]]:
    return [TopK, Rounding, LabelOnly, OutputNoise]
