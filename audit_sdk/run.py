"""Running attacks: the shared context and the audit pipeline.

report = audit_sdk.run_audit("model.onnx", data, attacks=["mia.loss-threshold"], rng=0)
print(report.summary())
report.to_json("out/report.json")
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .audit_report import AuditReport
from .context import ComponentRegistry, RunContext
from .data import AuditData
from .errors import AuditSDKError, AuditSDKWarning, InvalidDataError, InvalidModelError, InvalidParameterError
from .interfaces import Attack
from .membership import enrich_membership
from .progress import progress_mode, track
from .registry import get_registry
from .report_model import SCHEMA_VERSION, json_default
from .results import AttackResult
from .rng import RNGLike, as_generator
from .target import CAPABILITIES_FOR_ACCESS, Target, check_access

__all__ = ["AuditReport", "RunContext", "load_target", "run_attack", "run_audit", "SCHEMA_VERSION"]

# Old private name, kept for code written against it; use audit_sdk.report_model.json_default.
_json_default = json_default


def load_target(model: Any, *, registry: ComponentRegistry | None = None, **options: Any) -> Target:
    """Wrap ``model`` (an .onnx path, a torch module, a scikit-learn estimator, ...) in a Target.

    Adapters claim models through the ``make_target`` hook, so third-party adapters work here too.

    Raises:
        InvalidModelError: no adapter recognises the model.
    """
    if isinstance(model, Target):
        return model
    reg = registry or get_registry()
    target = reg.pm.hook.make_target(model=model, options=dict(options))
    if target is not None and not isinstance(target, Target):
        target = _make_target_checked(reg, model, dict(options))
    if target is None:
        raise InvalidModelError(
            f"no adapter can load a {type(model).__name__} ({str(model)[:80]!r}). Supported: a path to an .onnx file, "
            "a torch.nn.Module, or a scikit-learn estimator with predict_proba; other frameworks plug in through "
            "the make_target hook."
        )
    return target


def _make_target_checked(reg: ComponentRegistry, model: Any, options: dict[str, Any]) -> Target | None:
    """Ask each make_target implementation in turn; one that answers with something not a Target is at fault."""
    pm = reg.pm
    kwargs = {"model": model, "options": options}
    for impl in reversed(pm.hook.make_target.get_hookimpls()):  # pluggy's call order
        answer = impl.function(*[kwargs[a] for a in impl.argnames])
        if answer is None or isinstance(answer, Target):
            if answer is not None:
                return answer
            continue
        msg = f"make_target returned a {type(answer).__name__}, not a Target (or None)"
        if not getattr(pm, "is_isolated", lambda _n: False)(impl.plugin_name):
            raise InvalidModelError(f"plugin {impl.plugin_name!r}: {msg}.")
        pm.plugin_fault(impl.plugin_name, "make_target", msg)  # type: ignore[attr-defined]
    return None


def _alternatives(reg: ComponentRegistry, target: Target) -> list[str]:
    caps = set(target.capabilities)
    out = []
    for name in reg.names("attack"):
        cls = reg.get("attack", name)
        if CAPABILITIES_FOR_ACCESS.get(getattr(cls, "access", "black-box"), frozenset({"?"})) <= caps:
            out.append(name)
    return out


def run_attack(attack: Attack, target: Target, data: AuditData, *, rng: RNGLike = None, context: RunContext | None = None) -> AttackResult:
    """Run one attack after checking access and data against the target; time it; fire the hook."""
    ctx = context or RunContext(registry=get_registry())
    check_access(target, attack.access, attack_name=attack.name, alternatives=_alternatives(ctx.registry, target))
    check_data_against_target(target, data)
    t0 = time.perf_counter()
    result = attack.run(target, data, rng=rng, context=ctx)
    result.seconds = time.perf_counter() - t0
    enrich_membership(result, out_dir=ctx.out_dir)  # slices, verdict, score file: third-party results too
    ctx.registry.pm.hook.on_attack_finished(attack=attack, result=result)
    return result


def check_data_against_target(target: Target, data: AuditData) -> None:
    """Check every set's labels (members, non-members, population) and features against the model.

    Run before any attack spends time: a label the model has no class for would crash an attack
    late, or make reference models with the wrong number of classes.

    Raises:
        InvalidDataError: listing every set whose labels fall outside the model's classes.
    """
    k = int(target.n_classes or 0)
    problems = []
    sets = [("members", data.members), ("non_members", data.non_members)]
    if data.population is not None:
        sets.append(("population", data.population))
    for name, split in sets:
        y = np.asarray(split.y)
        if k and len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            bad = int(((y < 0) | (y >= k)).sum())
            problems.append(f"{name} has {bad} label(s) outside 0..{k - 1} (they span {int(y.min())}..{int(y.max())})")
    if problems:
        raise InvalidDataError(
            f"labels do not fit the model: the model predicts {k} classes but "
            + "; ".join(problems)
            + ". Remap the labels, or check you loaded the right model."
        )
    target.check_input(data.members.x[:1])


def _failure(att: Attack, exc: BaseException) -> dict[str, Any]:
    params = att.params.model_dump(mode="json") if hasattr(att.params, "model_dump") else {}
    return {
        "name": att.name,
        "params": params,
        "status": "failed",
        "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000],
        "error_type": type(exc).__name__,
        "input_error": isinstance(exc, AuditSDKError),
    }


_UNSET: Any = object()


def _progress_bar(enabled: bool) -> Any:
    """A bare rich Progress on stderr (kept for callers of old; new code uses ``audit_sdk.progress.track``)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # stderr: stdout stays clean for tables and --json output
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def run_audit(
    target: Any,
    data: AuditData | None = None,
    *,
    attacks: Sequence[str | Attack | tuple[str, dict[str, Any]]] | None = None,
    rng: RNGLike = _UNSET,
    registry: ComponentRegistry | None = None,
    context: RunContext | None = None,
    target_options: dict[str, Any] | None = None,
    config: Any = None,
    privacy: dict[str, Any] | Any | None = None,
    defenses: Sequence[Any] = (),
    progress: bool | None = None,
    label: str | None = None,
    on_attack_error: str = "raise",
    skip_unrunnable: bool = False,
) -> AuditReport:
    """Audit ``target`` on ``data`` with each attack and return the report.

    No global state: two audits in one process share nothing but the (read-only) plugin classes,
    so they may run one after the other or in threads.

    Args:
        target: a Target, or anything ``load_target`` accepts (an .onnx path, a torch module, ...).
        data: the audit data; with a config it may be omitted (the config's ``data`` is loaded).
        attacks: attack names, ``(name, params)`` pairs or Attack instances (default: the
            config's attacks, else ``mia.loss-threshold``).
        rng: seed for every attack; each attack gets its own stream derived from it (default:
            the config's seed, else 0).
        config: an ``AuditConfig``, a mapping, or a path to a YAML/JSON config (see
            ``audit_sdk.config``); supplies attacks, data, output defenses, seed and executor
            unless given explicitly, and is recorded in the report.
        privacy: figures of the DP training run the model came from (``epsilon``, ``delta``,
            accountant name, ...), reported beside the empirical epsilon lower bounds; a
            ``TrainResult`` (from ``audit_sdk.train`` or the torch Trainer) is accepted as is
            (its defenses' reports and notes).
        defenses: output defenses (Defense instances or ``(name, params)``) that wrap the target
            before it is audited, applied after the config's.
        progress: show progress on stderr: a bar per attack and its inner loops in a terminal,
            plain lines in a log (``audit_sdk.progress``); None follows ``progress_mode`` or
            ``context.progress``, off by default.
        label: a short name for the audited model, shown in reports.
        on_attack_error: ``"raise"`` (default) lets an attack's exception propagate;
            ``"record"`` records it in ``report.failures`` (and report.json, as a failed attack
            with its error) and runs the other attacks (what the CLI does).
        skip_unrunnable: drop attacks that cannot run on this model and data (wrong access level, or
            their ``Attack.check`` finds a problem) with a note in ``report.notes`` instead of refusing
            the whole audit; at least one attack must remain. The CLI's default attack set uses it.
    """
    if on_attack_error not in ("raise", "record"):
        raise InvalidParameterError(f"on_attack_error must be 'raise' or 'record'; got {on_attack_error!r}.")
    if privacy is not None and not isinstance(privacy, dict) and isinstance(getattr(privacy, "defenses", None), dict):
        notes = list(getattr(privacy, "notes", None) or [])
        privacy = {name: rep for name, rep in privacy.defenses.items() if rep} | ({"notes": notes} if notes else {})
    cfg = None
    if config is not None:
        from .config import AuditConfig, load_config, parse_config

        if isinstance(config, (str, Path)):
            cfg = load_config(config, registry=registry)
        elif isinstance(config, AuditConfig):
            cfg = config
        else:
            cfg = parse_config(config, registry=registry)
    reg = registry or (context.registry if context else get_registry())
    if data is None:
        if cfg is None:
            raise InvalidParameterError("run_audit needs data (an AuditData), or a config with a `data` section.")
        data = cfg.load_data()
    if attacks is None:
        attacks = cfg.attack_specs() if cfg is not None else ("mia.loss-threshold",)
    if rng is _UNSET:
        rng = cfg.seed if cfg is not None else 0
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    # label_classes: an adapter that picks the class-score output itself refuses one wider than the labels
    opts: dict[str, Any] = {"input_shape": data.feature_shape, "label_classes": data.n_classes}
    if cfg is not None and cfg.target is not None:
        opts.update(cfg.target.target_options())
    tgt = load_target(target, registry=reg, **{**opts, **(target_options or {})})
    defense_objs = [reg.create("defense", d.name, d.params) for d in (cfg.defenses if cfg is not None else [])]
    for d in defenses:
        defense_objs.append(
            reg.create("defense", d[0], d[1]) if isinstance(d, tuple) else (reg.create("defense", d) if isinstance(d, str) else d)
        )
    for d in defense_objs:
        if "output" not in getattr(d, "points", ()):
            raise InvalidParameterError(
                f"defense {d.name!r} acts at {', '.join(getattr(d, 'points', ())) or 'no'} point(s), not at the output: it changes "
                "training and cannot defend an already-trained model. Train with it (audit_sdk.compare / `audit-sdk compare`), "
                "or choose an output defense."
            )
        tgt = d.wrap_target(tgt)
    timings["load_target"] = time.perf_counter() - t_start
    attack_objs: list[Attack] = []
    for a in attacks:
        if isinstance(a, Attack):
            attack_objs.append(a)
        elif isinstance(a, tuple):
            attack_objs.append(reg.create("attack", a[0], a[1]))
        elif isinstance(a, str):
            attack_objs.append(reg.create("attack", a))
        else:
            raise InvalidParameterError(f"attacks must be names, (name, params) pairs or Attack objects; got {type(a).__name__}.")
    if not attack_objs:
        raise InvalidParameterError("no attacks to run; pass at least one attack name (see `audit-sdk plugins`).")
    # Refuse mismatched access and data the model cannot take up front, before any attack spends time.
    check_data_against_target(tgt, data)
    problems: list[str] = []
    skipped: list[str] = []
    runnable: list[Attack] = []
    for att in attack_objs:
        mine: list[str] = []
        try:
            check_access(tgt, att.access, attack_name=att.name, alternatives=_alternatives(reg, tgt))
        except AuditSDKError as exc:
            if not skip_unrunnable:
                raise  # the typed AccessError, naming the attacks that fit
            mine = [str(exc)]
        try:
            mine = mine or [f"{att.name}: {p}" if not p.startswith(att.name) else p for p in (att.check(tgt, data) or [])]
        except AuditSDKError as exc:
            mine = [str(exc)]
        if mine and skip_unrunnable:
            skipped.append(f"skipped {att.name}: " + " ".join(mine[0].split()))
        else:
            problems += mine
            runnable.append(att)
    if problems:
        raise InvalidDataError("; ".join(" ".join(p.split()).rstrip(".") for p in problems) + ".")
    if not runnable:
        raise InvalidDataError("no attack can run on this model and data: " + "; ".join(skipped))
    attack_objs = runnable
    own_executor = None
    if context is not None:
        ctx = context
    else:
        ctx = RunContext(registry=reg, progress=bool(progress))
        if cfg is not None:
            own_executor = ctx.executor = cfg.executor.make()
    seed_seq = np.random.SeedSequence(int(as_generator(rng).integers(0, 2**63 - 1)))
    t0 = time.perf_counter()
    results = []
    failures: list[dict[str, Any]] = []
    order: list[str] = []
    show = progress if progress is not None else (True if ctx.progress else None)
    try:
        with progress_mode(show), track(f"auditing{' ' + label if label else ''}", len(attack_objs)) as bar:
            for att, child in zip(attack_objs, seed_seq.spawn(len(attack_objs))):
                bar.update(description=f"auditing{' ' + label if label else ''} [{att.name}]")
                try:
                    res = run_attack(att, tgt, data, rng=np.random.default_rng(child), context=ctx)
                    _ = res.metrics  # metrics of a malformed result fail here, charged to the attack
                except Exception as exc:
                    from .errors import PluginError
                    from .executors import RunCancelled

                    # cancellation and strict-mode plugin faults end the run; anything else is this attack's failure
                    if on_attack_error == "raise" or isinstance(exc, (RunCancelled, PluginError)):
                        raise
                    failures.append(_failure(att, exc))
                    order.append("failed")
                else:
                    results.append(res)
                    order.append("ok")
                    key = att.name if att.name not in timings else f"{att.name}#{len(results)}"
                    timings[key] = res.seconds
                bar.advance()
    finally:
        if own_executor is not None:
            own_executor.close()
    timings["total"] = time.perf_counter() - t_start
    report = AuditReport(
        target=tgt.describe() | ({"defenses": [d.name for d in defense_objs]} if defense_objs else {}),
        data=data.summary(),
        results=results,
        seed=rng if isinstance(rng, int) else None,
        seconds=time.perf_counter() - t0,
        privacy=dict(privacy) if privacy else None,
        config=cfg.to_dict() if cfg is not None else None,
        timings=timings,
        label=label,
        failures=failures,
        notes=skipped + _data_notes(data),
        order=order,
    )
    for note in _data_notes(data) if results else []:  # notes on metrics only matter where there are metrics
        warnings.warn(note, AuditSDKWarning, stacklevel=2)
    report.sections.extend(_sections(reg, report))
    return report


#: Below this many members or non-members, membership metrics are too noisy to mean anything.
MIN_SAMPLES_TO_MEASURE = 10


def _data_notes(data: AuditData) -> list[str]:
    n_in, n_out = len(data.members), len(data.non_members)
    if min(n_in, n_out) < MIN_SAMPLES_TO_MEASURE:
        return [
            f"too few samples to measure: {n_in} member(s) and {n_out} non-member(s) (fewer than {MIN_SAMPLES_TO_MEASURE}); "
            "AUC, advantage and TPR here are noise, not evidence (one of each gives AUC 0 or 1 by chance)"
        ]
    return []


def _sections(reg: ComponentRegistry, report: AuditReport) -> list[dict[str, Any]]:
    """Collect report sections, hook by hook; a malformed section from a third-party plugin is its fault."""
    pm = reg.pm
    out: list[dict[str, Any]] = []
    # newest first, as pluggy calls them; a third-party hook is guarded (an exception is isolated)
    for impl in reversed(pm.hook.report_sections.get_hookimpls()):
        sections = impl.function(*[{"report": report}[a] for a in impl.argnames])
        if sections is None:
            continue
        ok = isinstance(sections, list) and all(isinstance(s, dict) and isinstance(s.get("title"), str) for s in sections)
        if ok:
            out.extend(sections)  # type: ignore[arg-type]
            continue
        isolated = getattr(pm, "is_isolated", lambda _n: False)(impl.plugin_name)
        msg = (
            f"report_sections of {impl.plugin_name!r} returned {type(sections).__name__}; expected a list of {{'title': str, 'html': str}}"
        )
        if not isolated:
            raise InvalidParameterError(msg + ".")
        pm.plugin_fault(impl.plugin_name, "report_sections", msg)  # type: ignore[attr-defined]
    return out
