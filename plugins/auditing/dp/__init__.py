"""``audit.dp``: check a training run's privacy claim empirically, with canaries.

    report = audit_sdk.run_audit(model, data, attacks=[("audit.dp", {"defense_params": {"target_epsilon": 8.0}})])
    report.results[0].extra["dp_audit"]["verdict"]      # "consistent" or "violated"

The attack trains the target's architecture again (re-initialised) on the members plus ``m``
canaries, each included independently with probability 1/2, using the torch Trainer and any
training Defense (``defense.dp-sgd`` by default). It scores every canary and turns the scores
into an epsilon lower bound at the requested confidence:

- ``one-run`` (Steinke, Nasr and Jagielski 2023): one training run; the auditor guesses in / out
  for the most and least confident canaries (``audit_sdk.metrics.one_run_audit``);
- ``multi-run`` (Jagielski et al. 2020, Nasr et al. 2021): ``runs`` training runs, one canary,
  included in half of them; the canary's score per run gives a ROC and a Clopper-Pearson bound.

Canaries: ``random-label`` (population inputs with a wrong label), ``ood`` (uniform noise inputs
with random labels), ``member`` (m of the training examples themselves, each kept with probability
1/2: the real data, no extra rows, the hardest to detect), ``gradient`` (crafted per-example gradients: one random coordinate each, a
Dirac canary, of norm 10x the clip bound so clipping binds). Threat models: ``black-box`` sees
only the final model (input canaries: their loss; gradient canaries: the final parameters'
displacement along each canary); ``white-box`` sees every released update, as a federated-learning
server does, and scores gradient canaries by the gradient alignment: the released gradient along
each canary summed over steps (Steinke et al.), and its squared step-to-step change (noise that is
wrongly reused across steps cancels there). The bound takes the best statistic, paying for both.
Input canaries in the white-box model were tried and dropped: aligning every canary's own gradient
with each update costs a per-example gradient pass per step and proved weaker than Dirac canaries.

The result is a membership result over the canaries (truth = included) whose epsilon lower bound
is the one-run bound (``bound="one-run"``) or the multi-run ROC bound, with ``extra["dp_audit"]``:
the run's claimed epsilon, the epsilon of every registered accountant recomputed from the events
the defense charged, and the verdict ("violated" when the lower bound exceeds the claim: a bug in
the DP implementation or its accounting). torch is imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from audit_sdk import Attack, hookimpl

from ._canaries import make_canaries
from ._params import DPAuditParams
from ._plugin import DPAudit
from ._report import accountant_epsilons, sections

__all__ = ["DPAudit", "DPAuditParams", "accountant_epsilons", "make_canaries"]


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [DPAudit]


@hookimpl
def report_sections(report: Any) -> list[dict[str, Any]]:
    """A "DP audit" section: the claim, every accountant's epsilon and the lower bound, per audit.dp result."""
    return sections(report)
