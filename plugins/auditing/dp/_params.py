"""``audit.dp``'s options, apart from the plugin class so the training code and the command can share them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DPAuditParams"]


class DPAuditParams(BaseModel):
    """Options of ``audit.dp`` (``DPAudit.Params``); the ``dp-audit`` command takes its choices from here."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["one-run", "multi-run"] = Field("one-run", description="one training run with m canaries, or many runs with one")
    canaries: int = Field(1000, ge=10, description="number of canaries m (one-run); each is included with probability 1/2")
    canary: Literal["random-label", "ood", "member", "gradient"] = Field(
        "gradient", description="what a canary is (gradient: Dirac gradients; member: training examples themselves)"
    )
    threat_model: Literal["black-box", "white-box"] = Field("white-box", description="final model only, or every released update")
    runs: int = Field(32, ge=2, description="training runs in multi-run mode (half with the canary; 32 prove at most ~1.0, 64 ~1.8)")
    defense: str | None = Field("defense.dp-sgd", description="training defense to audit (None: plain training)")
    defense_params: dict[str, Any] = Field(default_factory=dict, description="its options, e.g. {'target_epsilon': 8.0}")
    architecture: Literal["from-target", "mlp", "cnn", "lenet"] = Field("from-target", description="re-initialised target, or a default")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-2, gt=0)
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    confidence: float = Field(0.95, gt=0, lt=1)
    delta: float | None = Field(None, ge=0, lt=1, description="delta of the claim tested (default: the defense's, else 1e-5)")
    guesses: int | None = Field(
        None, ge=1, description="fix the number of guesses in advance (default: best of a grid, Bonferroni-corrected)"
    )
    canary_norm: float | None = Field(None, gt=0, description="norm of gradient canaries (default: 10x the clip bound, so clipping binds)")
    accountants: list[str] | None = Field(None, description="accountants to recompute epsilon with (default: every registered one)")
    seed: int = Field(0, ge=0, description="seeds canaries, inclusion and training")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the audit's runs train (auto: CUDA when present)")
