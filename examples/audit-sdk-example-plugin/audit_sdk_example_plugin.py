"""A third-party audit-sdk plugin: membership by the model's confidence in the true label."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl


class ConfidenceAttack(Attack):
    """Members tend to get a higher probability on their true label."""

    name = "mia.example-confidence"
    summary = "Score membership by the probability of the true label (example third-party plugin)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(1.0, gt=0)

    def run(self, target: Any, data: Any, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, y, truth = data.combined()
        p = target.predict_proba(x)[range(len(y)), y]
        return AttackResult(
            attack=self.name, params=self.params.model_dump(), scores=p ** (1 / self.params.temperature), truth=truth, labels=y
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [ConfidenceAttack]
