"""Audit configuration files (YAML or JSON), validated by pydantic and by each plugin's ``Params``.

    cfg = load_config("audit.yaml")                 # raises InvalidParameterError naming every bad field
    report = audit_sdk.run_audit(cfg.target.model, cfg.load_data(), config=cfg)

Structure (``audit-sdk config example`` prints a commented file, ``audit-sdk config schema`` the
JSON Schema):

- ``target``: the model to audit (``model``: a path to an .onnx file; ``batch_size``).
- ``data``: ``source: npz`` with ``path``, or ``source: digits`` (the embedded data set) with sizes.
- ``attacks``: names, or ``{name, params}``; params are validated against the attack's registered
  ``Params`` class, so a typo fails with its path (``attacks[0].params.calibraton``).
- ``defenses``: output defenses applied to the target before auditing (``{name, params}``).
- ``seed``, ``output`` (directory, json/html), ``fail_on`` (privacy gate rules, see
  ``audit_sdk.gate``), ``executor`` (``local`` with ``workers``, or another registered backend).
- ``compare``: a defense x attack grid for ``audit-sdk compare`` (architecture, training options,
  cells of defenses, sweeps).

Loading never executes anything from the file (YAML's safe loader) and is bounded: a config must
be UTF-8 and under ``MAX_CONFIG_BYTES``, nest at most ``MAX_CONFIG_DEPTH`` levels, use at most
``MAX_YAML_ALIASES`` aliases and expand to at most ``MAX_CONFIG_NODES`` values (a few hundred bytes
of YAML aliases can otherwise stand for billions of values).
"""

from __future__ import annotations

import copy
import json
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BackendUnavailableError, InvalidParameterError

if TYPE_CHECKING:
    from .context import ComponentRegistry
    from .data import AuditData

__all__ = [
    "AttackSpec",
    "AuditConfig",
    "CellSpec",
    "CompareSpec",
    "DataSpec",
    "DefenseSpec",
    "ExecutorSpec",
    "OutputSpec",
    "SweepSpec",
    "TargetSpec",
    "config_schema",
    "example_config",
    "load_config",
    "parse_config",
]

_STRICT = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """A registered component by name, with its options."""

    model_config = _STRICT
    name: str = Field(description="registered name, e.g. mia.loss-threshold (see `audit-sdk plugins`)")
    params: dict[str, Any] = Field(default_factory=dict, description="options, validated against the component's Params")


class AttackSpec(ComponentSpec):
    """An attack to run."""


class DefenseSpec(ComponentSpec):
    """A defense: output defenses wrap the target; training-time ones apply in ``compare`` cells."""


def _component_list(value: Any) -> Any:
    # "mia.loss-threshold" is shorthand for {"name": "mia.loss-threshold"}.
    if isinstance(value, list):
        return [{"name": v} if isinstance(v, str) else v for v in value]
    return value


class TargetSpec(BaseModel):
    """The model to audit."""

    model_config = _STRICT
    model: str = Field(description="path to the model (.onnx), or anything an installed adapter recognises")
    batch_size: int = Field(1024, ge=1, description="inputs per model query")
    output: str | int | None = Field(None, description="ONNX: the output (name or index) holding the class scores (default: found)")
    scores: Literal["logits", "probabilities"] | None = Field(None, description="ONNX: what the output holds (default: detected)")
    pad_token_id: int | None = Field(None, description="text models: padding id; a missing attention_mask is input_ids != it")

    def target_options(self) -> dict[str, Any]:
        """Options for ``load_target`` (those left unset are omitted)."""
        opts = {"batch_size": self.batch_size, "output": self.output, "scores": self.scores, "pad_token_id": self.pad_token_id}
        return {k: v for k, v in opts.items() if v is not None}


class DataSpec(BaseModel):
    """Where the audit data comes from."""

    model_config = _STRICT
    source: Literal["npz", "digits"] = Field("npz", description="npz: a file made by audit_sdk.save_npz; digits: the embedded data set")
    path: str | None = Field(None, description="the .npz file (source: npz)")
    n_members: int = Field(250, ge=1, description="digits: training-set size")
    n_non_members: int = Field(250, ge=1, description="digits: held-out size")
    n_population: int = Field(1000, ge=0, description="digits: auxiliary data for the attacker")
    label_noise: float = Field(0.0, ge=0, lt=1, description="digits: fraction of labels flipped before the split")

    @model_validator(mode="after")
    def _path_for_npz(self) -> DataSpec:
        if self.source == "npz" and not self.path:
            raise ValueError("source 'npz' needs a path to the .npz file (or use source: digits)")
        return self

    def load(self, *, seed: int = 0) -> AuditData:
        """Load the data this spec describes."""
        from .data import load_digits_data, load_npz, make_audit_data

        if self.source == "npz":
            return load_npz(str(self.path))
        from .data import Split

        digits = load_digits_data()
        if self.label_noise:
            import numpy as np

            gen = np.random.default_rng(seed + 1)
            y = digits.y.copy()
            flip = gen.random(len(y)) < self.label_noise
            y[flip] = (y[flip] + gen.integers(1, 10, int(flip.sum()))) % 10
            digits = Split(digits.x, y)
        data, _ = make_audit_data(
            digits, n_members=self.n_members, n_non_members=self.n_non_members, n_population=self.n_population, rng=seed
        )
        return data


class OutputSpec(BaseModel):
    """What to write, and where."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    dir: str = Field("audit-sdk-out", description="output directory")
    json_report: bool = Field(True, alias="json", description="write report.json")
    html: bool = Field(True, description="write report.html (needs matplotlib and jinja2)")


class ExecutorSpec(BaseModel):
    """Where fan-out work (reference models, grid cells) runs."""

    model_config = _STRICT
    name: str = Field("local", description="executor backend: local (processes on this machine), or another registered one")
    workers: int = Field(1, ge=0, description="worker processes (0: one per CPU)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend options (e.g. a Ray address)")

    def make(self) -> Any:
        from .executors import make_executor

        return make_executor(self.name, workers=self.workers, **self.options)


class TrainSpec(BaseModel):
    """How each grid model is trained (the torch Trainer's options)."""

    model_config = _STRICT
    architecture: str = Field("cnn", description="adapters.torch.make_model architecture: mlp, cnn or lenet")
    epochs: int = Field(60, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    sampling: Literal["shuffle", "poisson"] = "shuffle"


class TrainOverrides(BaseModel):
    """Per-cell changes to the grid's training options (e.g. DP-SGD wants a larger learning rate)."""

    model_config = _STRICT
    epochs: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    optimizer: Literal["sgd", "momentum", "adam"] | None = None
    sampling: Literal["shuffle", "poisson"] | None = None

    def apply(self, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, **self.model_dump(exclude_none=True)}


class SweepSpec(BaseModel):
    """One cell per value of one defense option, e.g. DP-SGD at several target epsilons."""

    model_config = _STRICT
    name: str = Field(description="defense name, e.g. defense.dp-sgd")
    param: str = Field(description="the option to vary, e.g. target_epsilon")
    values: list[Any] = Field(min_length=1, description="one cell per value")
    params: dict[str, Any] = Field(default_factory=dict, description="options shared by every cell of the sweep")
    label: str | None = Field(None, description="cell label prefix (default: the defense name)")
    train: TrainOverrides = Field(default_factory=lambda: TrainOverrides.model_validate({}), description="training changes for these cells")


class CellSpec(BaseModel):
    """One grid cell: a model trained (and/or served) under these defenses; no defenses is the baseline."""

    model_config = _STRICT
    label: str = Field(description="row label in the table and the plots")
    defenses: list[DefenseSpec] = Field(default_factory=list)
    train: TrainOverrides = Field(
        default_factory=lambda: TrainOverrides.model_validate({}), description="changes to compare.train for this cell (same architecture)"
    )

    _to_specs = field_validator("defenses", mode="before")(_component_list)


class CompareSpec(BaseModel):
    """A defense x attack grid (``audit-sdk compare``)."""

    model_config = _STRICT
    train: TrainSpec = Field(default_factory=lambda: TrainSpec.model_validate({}))
    baseline: bool = Field(True, description="add an undefended cell labelled 'none'")
    cells: list[CellSpec] = Field(default_factory=list)
    sweeps: list[SweepSpec] = Field(default_factory=list)
    audit_format: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="attack each model as its exported ONNX file, as the torch model, or auto: ONNX for the attacks "
        "it can serve, the torch model for white-box and gradient attacks",
    )

    def expanded_cells(self) -> list[CellSpec]:
        """The baseline, the listed cells, then one cell per sweep value."""
        cells = [CellSpec(label="none")] if self.baseline else []
        cells += list(self.cells)
        for s in self.sweeps:
            for v in s.values:
                cells.append(
                    CellSpec(
                        label=f"{s.label or s.name} {s.param}={v}",
                        defenses=[DefenseSpec(name=s.name, params={**s.params, s.param: v})],
                        train=s.train,
                    )
                )
        return cells


class AuditConfig(BaseModel):
    """An audit (and optionally a comparison grid), as read from a YAML or JSON file."""

    model_config = _STRICT
    version: Literal[1] = Field(1, description="config format version")
    target: TargetSpec | None = None
    data: DataSpec | None = None
    attacks: list[AttackSpec] = Field(default_factory=lambda: [AttackSpec(name="mia.loss-threshold")], min_length=1)
    defenses: list[DefenseSpec] = Field(default_factory=list, description="output defenses applied to the target before auditing")
    seed: int = Field(0, description="seed for every attack (each derives its own stream)")
    output: OutputSpec = Field(default_factory=lambda: OutputSpec.model_validate({}))
    fail_on: list[str] = Field(default_factory=list, description="privacy gate rules, e.g. 'mia.loss-threshold.auc > 0.6'")
    executor: ExecutorSpec = Field(default_factory=lambda: ExecutorSpec.model_validate({}))
    compare: CompareSpec | None = None

    _to_specs = field_validator("attacks", "defenses", mode="before")(_component_list)

    @field_validator("fail_on", mode="before")
    @classmethod
    def _one_rule(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("fail_on")
    @classmethod
    def _rules_parse(cls, v: list[str]) -> list[str]:
        from .gate import parse_rules

        try:
            parse_rules(v)
        except InvalidParameterError as exc:
            raise ValueError(str(exc)) from None
        return v

    def attack_specs(self) -> list[tuple[str, dict[str, Any]]]:
        return [(a.name, dict(a.params)) for a in self.attacks]

    def load_data(self) -> AuditData:
        if self.data is None:
            raise InvalidParameterError("the config has no `data` section; add one (source: npz with a path, or source: digits).")
        return self.data.load(seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- validation
def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _errors(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = _loc(prefix + tuple(err.get("loc", ())))
        if err.get("type") == "extra_forbidden":
            lines.append(f"{loc}: unknown option")
        else:
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            lines.append(f"{loc}: {msg} (got {_short(err.get('input'))})" if err.get("type") != "missing" else f"{loc}: field required")
    return lines


def _check_components(raw: Any, reg: ComponentRegistry) -> list[str]:
    """Check every component spec found in ``raw`` (a config mapping) against the registry.

    Works on the raw mapping so that option typos are reported together with structural errors.
    """
    from .errors import UnknownComponentError

    problems: list[str] = []

    def check(kind: str, spec: Any, where: tuple[Any, ...], extra: dict[str, Any] | None = None) -> None:
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return  # structural problem, reported by pydantic
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            return
        try:
            cls = reg.get(kind, spec["name"])
        except UnknownComponentError as exc:
            problems.append(f"{_loc(where + ('name',))}: {exc}")
            return
        try:
            cls.Params(**{**params, **(extra or {})})
        except ValidationError as exc:
            problems.extend(_errors(exc, where + ("params",)))

    def items(node: Any, key: str) -> list[Any]:
        v = node.get(key) if isinstance(node, dict) else None
        return v if isinstance(v, list) else []

    for i, a in enumerate(items(raw, "attacks")):
        check("attack", a, ("attacks", i))
    for i, d in enumerate(items(raw, "defenses")):
        check("defense", d, ("defenses", i))
    cmp = raw.get("compare") if isinstance(raw, dict) else None
    for i, c in enumerate(items(cmp, "cells")):
        for j, d in enumerate(items(c, "defenses")):
            check("defense", d, ("compare", "cells", i, "defenses", j))
    for i, sw in enumerate(items(cmp, "sweeps")):
        if isinstance(sw, dict) and isinstance(sw.get("param"), str):
            for v in sw.get("values") or []:
                check("defense", {"name": sw.get("name"), "params": sw.get("params") or {}}, ("compare", "sweeps", i), {sw["param"]: v})
    return problems


def parse_config(raw: Any, *, registry: ComponentRegistry | None = None, source: str = "config") -> AuditConfig:
    """Validate a mapping (already parsed from YAML/JSON) into an AuditConfig.

    Every problem is reported at once, each with its field path; attack and defense options are
    checked against the registered ``Params`` classes.

    Raises:
        InvalidParameterError: listing every invalid field.
    """
    from .registry import get_registry

    if isinstance(raw, AuditConfig):
        raw = raw.to_dict()
    if not isinstance(raw, dict):
        raise InvalidParameterError(
            f"{source}: the top level must be a mapping of sections (target, data, attacks, ...); got {type(raw).__name__}."
        )
    problems: list[str] = []
    cfg = None
    try:
        cfg = AuditConfig.model_validate(raw)
    except ValidationError as exc:
        problems += _errors(exc)
    problems += _check_components(raw, registry or get_registry())
    if problems or cfg is None:
        raise InvalidParameterError(f"{source}: invalid config: " + "; ".join(problems))
    return cfg


#: Bounds on a config file (see the module docstring).
MAX_CONFIG_BYTES = 4 << 20
MAX_CONFIG_DEPTH = 64
MAX_YAML_ALIASES = 256
MAX_CONFIG_NODES = 200_000


def _short(value: Any) -> str:
    """A bounded repr for error messages (never the whole, possibly huge, input)."""
    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = 60, 60, 4, 4, 2
    return r.repr(value)


def _check_shape(value: Any, source: str) -> None:
    """Refuse parsed content nested deeper than MAX_CONFIG_DEPTH or larger than MAX_CONFIG_NODES values.

    Iterative, and counts shared sub-trees (YAML aliases) once per reference, as a consumer sees them.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise InvalidParameterError(
                f"{source}: the config expands to more than {MAX_CONFIG_NODES} values; an audit config is far smaller."
            )
        if isinstance(node, (dict, list)):
            if depth > MAX_CONFIG_DEPTH:
                raise InvalidParameterError(
                    f"{source}: the config nests deeper than {MAX_CONFIG_DEPTH} levels; an audit config needs a handful."
                )
            children = list(node.values()) + list(node.keys()) if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children)


def _yaml_loader() -> Any:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader that stops at MAX_CONFIG_DEPTH nesting and MAX_YAML_ALIASES aliases while composing."""

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.events.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_YAML_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*ref); an audit config needs few, if any")
            self._depth += 1
            try:
                if self._depth > MAX_CONFIG_DEPTH:
                    raise yaml.YAMLError(f"nested deeper than {MAX_CONFIG_DEPTH} levels; an audit config needs a handful")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return BoundedLoader


def _read(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise InvalidParameterError(f"{path}: {size} bytes is too large for a config (at most {MAX_CONFIG_BYTES}).")
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidParameterError(f"{path}: cannot read the config ({exc.strerror or exc}).") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(
            f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start : exc.start + 1]!r}); save the config as UTF-8."
        ) from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
        except RecursionError:
            raise InvalidParameterError(f"{path}: the config nests deeper than {MAX_CONFIG_DEPTH} levels.") from None
        _check_shape(value, str(path))
        return value
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a default dependency
        raise BackendUnavailableError('reading YAML configs needs pyyaml: pip install "audit-sdk[report]"') from exc
    try:
        loader = _yaml_loader()(text)
        try:
            value = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidParameterError(f"{path}: not valid YAML{where}: {' '.join(str(problem).split())[:200]}.") from None
    except RecursionError:
        raise InvalidParameterError(f"{path}: the config nests deeper than {MAX_CONFIG_DEPTH} levels.") from None
    _check_shape(value, str(path))
    return value


def load_config(path: str | Path, *, registry: ComponentRegistry | None = None) -> AuditConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) audit config.

    Raises:
        InvalidParameterError: the file is missing, unparsable, or has invalid fields (with paths).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidParameterError(f"config file {str(p)!r} does not exist; `audit-sdk config example > audit.yaml` writes one.")
    return parse_config(_read(p), registry=registry, source=str(p))


# --------------------------------------------------------------------------- schema and example
def _hoist(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Move a sub-schema's $defs into ``defs`` under prefixed names, rewriting its $refs."""
    schema = copy.deepcopy(schema)
    local = schema.pop("$defs", {})
    rename = {k: f"{prefix}__{k}" for k in local}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    f"#/$defs/{rename[v.rsplit('/', 1)[-1]]}"
                    if k == "$ref" and isinstance(v, str) and v.rsplit("/", 1)[-1] in rename
                    else fix(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for k, v in local.items():
        defs[rename[k]] = fix(v)
    return fix(schema)


def config_schema(registry: ComponentRegistry | None = None) -> dict[str, Any]:
    """JSON Schema of the config file, with each registered attack's and defense's options.

    ``attacks`` items are either a registered name or ``{name, params}`` whose ``params`` follow
    that attack's ``Params`` schema, so an editor or ``jsonschema`` catches typos the way
    ``load_config`` does.
    """
    from .registry import get_registry

    reg = registry or get_registry()
    schema = AuditConfig.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "audit-sdk audit config"

    def variants(kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names = reg.names(kind)
        if names:
            out.append({"type": "string", "enum": names})
        for n in names:
            cls = reg.get(kind, n)
            key = "".join(ch if ch.isalnum() else "_" for ch in n)
            params = _hoist(cls.Params.model_json_schema(), key, defs)
            params.pop("title", None)
            out.append(
                {
                    "type": "object",
                    "description": cls.summary,
                    "properties": {"name": {"const": n}, "params": params},
                    "required": ["name"],
                    "additionalProperties": False,
                }
            )
        return out

    attack_item = {"anyOf": variants("attack")} if reg.names("attack") else {"$ref": "#/$defs/AttackSpec"}
    defense_vars = variants("defense")
    defense_item = {"anyOf": defense_vars} if defense_vars else {"$ref": "#/$defs/DefenseSpec"}
    schema["properties"]["attacks"]["items"] = attack_item
    schema["properties"]["defenses"]["items"] = defense_item
    if "CellSpec" in defs:
        defs["CellSpec"]["properties"]["defenses"]["items"] = defense_item
    return schema


_EXAMPLE_HEAD = """\
# audit-sdk audit config (YAML; JSON with the same keys works too).
# Validate it with `audit-sdk config check audit.yaml`; the JSON Schema is `audit-sdk config schema`.
version: 1

# The model to audit: an ONNX file (or anything an installed adapter recognises).
target:
  model: model.onnx
  batch_size: 1024            # inputs per query
  # output: probabilities     # ONNX: the output holding the class scores (default: found; `audit-sdk inspect`)
  # scores: logits            # ONNX: logits or probabilities (default: detected)
  # pad_token_id: 0           # text models: builds a missing attention_mask as input_ids != 0

# Members (the training set), non-members and an optional population the attacker may use.
data:
  source: npz                 # npz (audit_sdk.save_npz format) or digits (embedded data set)
  path: data.npz

# Attacks, by registered name, with options checked against each attack's Params
# (a typo fails with its path, e.g. attacks[0].params.calibraton). `audit-sdk plugins` lists them.
attacks:
"""

_EXAMPLE_TAIL = """\

# Output defenses wrap the target before it is audited (rounding, top-k, noisy outputs, ...).
defenses: []

seed: 0

output:
  dir: audit-sdk-out          # report.json and report.html are written here
  json: true
  html: true

# CI privacy gate: the audit exits 1 when any rule holds (ATTACK.METRIC OP NUMBER).
fail_on:
  - "{rule}"

# Where fan-out work runs (reference models, grid cells).
executor:
  name: local
  workers: 1

# `audit-sdk compare --config FILE` trains the same architecture under each cell's defenses on
# data.members and audits every model with the attacks above. Uncomment to use:
# compare:
#   train: {{architecture: cnn, epochs: 60, batch_size: 32, lr: 0.002}}
#   baseline: true            # an undefended cell labelled 'none'
#   cells:
#     - label: suppress
#       defenses: [{{name: defense.suppress, params: {{}}}}]
#   sweeps:
#     - name: defense.dp-sgd
#       param: target_epsilon
#       values: [1.0, 4.0, 16.0]
"""


def _yaml_scalar(v: Any) -> str:
    return json.dumps(v)


def example_config(registry: ComponentRegistry | None = None) -> str:
    """A commented YAML config that validates against the registered plugins.

    The first registered membership attack is enabled with its default options spelled out;
    the other registered attacks are listed as comments.
    """
    from .registry import get_registry

    reg = registry or get_registry()
    names = reg.names("attack")
    membership = [n for n in names if getattr(reg.get("attack", n), "result_kind", "membership") == "membership"]
    first = "mia.loss-threshold" if "mia.loss-threshold" in membership else (membership[0] if membership else (names[0] if names else None))
    lines: list[str] = []
    if first is None:
        lines.append("  []                          # no attack is registered; install one")
    for n in names:
        cls = reg.get("attack", n)
        try:
            defaults = cls.Params().model_dump(mode="json")
        except ValidationError:  # an attack with required options: list them without values
            defaults = {k: None for k in cls.Params.model_fields}
        comment = "" if n == first else "# "
        lines.append(f"  {comment}- name: {n}            # {cls.summary}")
        if defaults:
            lines.append(f"  {comment}  params:")
            for k, v in defaults.items():
                lines.append(f"  {comment}    {k}: {_yaml_scalar(v)}")
    rule = f"{first}.tpr_at_fpr.0.01 > 0.05" if first in membership else "*.auc > 0.6"
    return _EXAMPLE_HEAD + "\n".join(lines) + "\n" + _EXAMPLE_TAIL.format(rule=rule)
