# Hookspecs are signatures only; their empty bodies are never run.
# mypy: disable-error-code="empty-body"
"""Hook specifications of audit-sdk (contract).

Grow a spec by adding arguments, never by renaming or removing them: an implementation may
accept any subset of a spec's arguments, so old plugins keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    import argparse

    from .interfaces import Accountant, Attack, Defense, Mechanism
    from .report_model import ReportModel
    from .results import AttackResult
    from .target import Target
    from .training_contract import TrainContext, Trainer


@hookspec
def register_mechanisms() -> list[type[Mechanism]]:
    """Contribute Mechanism classes.

    Called once while the plugin manager is built. Return classes, not instances; the core
    rejects a duplicate ``name`` and names both packages.
    """


@hookspec
def register_accountants() -> list[type[Accountant]]:
    """Contribute Accountant classes (same rules as ``register_mechanisms``)."""


@hookspec
def register_defenses() -> list[type[Defense]]:
    """Contribute Defense classes (same rules as ``register_mechanisms``)."""


@hookspec
def register_attacks() -> list[type[Attack]]:
    """Contribute Attack classes (same rules as ``register_mechanisms``)."""


@hookspec
def register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit-sdk`` sub-commands (datasette's habit: commands live beside the Params they expose).

    Called once while the command line is built, after the core's own commands, in plugin
    registration order. Add each command with ``subparsers.add_parser(NAME, help=...)`` and set
    its handler with ``set_defaults(func=handler)``, where ``handler(args) -> int`` returns the exit
    code; an ``AuditSDKError`` it raises becomes one ``audit-sdk: error: ...`` line and exit 2.
    ``audit_sdk.cli.helpers`` has the shared options (``add_compute_options`` for ``--threads`` and
    ``--quiet``) and checks. A third-party plugin that raises here is isolated: the commands it
    added are removed, one warning names its distribution, and the rest of the CLI works
    (fatal with ``--strict-plugins``). The return value is ignored.
    """


@hookspec(firstresult=True)
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    """Wrap ``model`` in a Target if this plugin can, else return None.

    First result wins: adapters claim what they recognise (a path to an ``.onnx`` file, a torch
    module, a scikit-learn estimator). ``options`` holds keyword options for the target
    (e.g. ``batch_size``, ``output``, ``scores``, ``pad_token_id``, ``device``); ignore the ones
    you do not know. ``run_audit`` also passes ``input_shape`` (the data's per-sample shape) and
    ``label_classes`` (how many classes the audit labels span).
    """


@hookspec(firstresult=True)
def make_trainer(model: Any, options: dict[str, Any]) -> Trainer | None:
    """Offer a ``audit_sdk.training.Trainer`` for ``model`` if this plugin can train it, else None.

    First result wins. ``model`` is a model object, a named architecture or a spec mapping with a
    ``family`` key (e.g. ``{"family": "sklearn", "estimator": "RandomForestClassifier"}``);
    ``options`` holds ``input_shape``, ``n_classes``, ``train`` (TrainConfig fields) and
    ``device``; ignore the ones you do not know. Reference models, DP audits, ``compare`` grids
    and ``audit-sdk train`` all train through the answer (build, re-initialise, train with
    defenses and observers, accuracy, export); ``docs/trainers.md`` shows a third-party trainer.
    """


@hookspec
def on_train_step(step: int, epoch: int, metrics: dict[str, Any], context: TrainContext) -> None:
    """Observe a finished training step (monitors, callbacks, loggers).

    Called by a Trainer after every optimizer step. ``metrics`` holds at least ``loss`` and, under
    DP training, ``epsilon``. ``context`` is the run's TrainContext (its framework parts are typed
    ``Any``). The
    return value is ignored.
    """


@hookspec
def on_epoch_end(epoch: int, metrics: dict[str, Any], context: TrainContext) -> None:
    """Observe a finished epoch (e.g. run an attack every N epochs). The return value is ignored."""


@hookspec
def on_attack_finished(attack: Attack, result: AttackResult) -> None:
    """Observe a finished attack, e.g. to log it. The return value is ignored."""


@hookspec
def report_sections(report: ReportModel) -> list[dict[str, Any]]:
    """Contribute extra sections to a report.

    Each section is ``{"title": str, "html": str}`` (the HTML is embedded as is) and may carry
    ``"data"`` (JSON-able) for report.json. Return an empty list to add nothing.
    """


@hookspec(firstresult=True)
def run_demo(kind: str, options: dict[str, Any]) -> int | None:
    """Run the demo named ``kind`` (``audit-sdk demo --lm`` asks for ``"lm"``) if this plugin owns it.

    First result wins; return None for a kind you do not know. ``options`` holds the demo
    command's options (``out``, ``seed``, ``epochs`` (None: the demo's own), ``threads``,
    ``quiet``, ``no_defenses``). Return the exit code (0 ok, 3 a row failed).
    """
