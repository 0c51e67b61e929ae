"""Audit config files: pydantic validation with field paths, per-plugin Params, JSON Schema, the commented example."""

from __future__ import annotations

import json
import types

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, Defense, get_registry, hookimpl
from audit_sdk.cli import main
from audit_sdk.config import AuditConfig, config_schema, example_config, load_config, parse_config
from audit_sdk.errors import InvalidParameterError


class FakeAttack(Attack):
    name = "mia.test-config-fake"
    summary = "Test double with two options."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rounds: int = Field(3, ge=1)
        mode: str = "fast"

    def run(self, target, data, *, rng=None, context=None):  # pragma: no cover - never run here
        x, y, truth = data.combined()
        return AttackResult(attack=self.name, scores=truth.astype(float), truth=truth)


class FakeDefense(Defense):
    name = "defense.test-config-fake"
    summary = "Test double acting at the output."
    points = ("output",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        decimals: int = Field(2, ge=0)


@pytest.fixture
def reg(pm):
    plugin = types.SimpleNamespace(register_attacks=hookimpl(lambda: [FakeAttack]), register_defenses=hookimpl(lambda: [FakeDefense]))
    pm.register(plugin, name="test-config-fake")
    yield get_registry(pm)
    pm.unregister(name="test-config-fake")


def test_typo_in_an_attack_option_fails_with_the_field_path(tmp_path):
    p = tmp_path / "audit.yaml"
    p.write_text("attacks:\n  - name: mia.loss-threshold\n    params:\n      calibraton: per-class\n")
    with pytest.raises(InvalidParameterError, match=r"attacks\[0\]\.params\.calibraton: unknown option"):
        load_config(p)


def test_every_problem_reported_at_once_with_paths(reg):
    raw = {
        "attacks": ["mia.loss-threshold", {"name": "mia.test-config-fake", "params": {"rounds": 0, "mdoe": "x"}}, "mia.lirra"],
        "output": {"dri": "x"},
        "seed": "zero",
        "compare": {"cells": [{"label": "a", "defenses": [{"name": "defense.test-config-fake", "params": {"decimals": -1}}]}]},
    }
    with pytest.raises(InvalidParameterError) as exc:
        parse_config(raw, registry=reg)
    msg = str(exc.value)
    for piece in (
        "attacks[1].params.rounds",
        "attacks[1].params.mdoe: unknown option",
        "attacks[2].name: unknown attack 'mia.lirra'",
        "output.dri: unknown option",
        "seed:",
        "compare.cells[0].defenses[0].params.decimals",
    ):
        assert piece in msg, (piece, msg)


def test_valid_config_round_trip_and_shorthands(reg, tmp_path):
    raw = {
        "target": {"model": "m.onnx"},
        "data": {"source": "digits", "n_members": 50},
        "attacks": ["mia.test-config-fake", {"name": "mia.loss-threshold", "params": {"calibration": "per-class"}}],
        "defenses": ["defense.test-config-fake"],
        "fail_on": "mia.loss-threshold.auc > 0.6",
        "compare": {"sweeps": [{"name": "defense.test-config-fake", "param": "decimals", "values": [1, 3], "train": {"lr": 0.01}}]},
    }
    p = tmp_path / "audit.json"
    p.write_text(json.dumps(raw))
    cfg = load_config(p, registry=reg)
    assert cfg.attack_specs() == [("mia.test-config-fake", {}), ("mia.loss-threshold", {"calibration": "per-class"})]
    assert cfg.fail_on == ["mia.loss-threshold.auc > 0.6"] and cfg.defenses[0].name == "defense.test-config-fake"
    cells = cfg.compare.expanded_cells()
    assert [c.label for c in cells] == ["none", "defense.test-config-fake decimals=1", "defense.test-config-fake decimals=3"]
    assert cells[2].defenses[0].params == {"decimals": 3}
    assert cells[2].train.apply({"lr": 0.002, "epochs": 5}) == {"lr": 0.01, "epochs": 5} and cells[0].train.apply({"lr": 1}) == {"lr": 1}
    # the dumped config validates again (reports embed it)
    assert parse_config(cfg.to_dict(), registry=reg) == cfg


def test_bad_rule_bad_sweep_value_and_missing_npz_path(reg):
    with pytest.raises(InvalidParameterError, match=r"fail_on: cannot parse the rule"):
        parse_config({"fail_on": ["auc >> 1"]}, registry=reg)
    with pytest.raises(InvalidParameterError, match=r"compare.sweeps\[0\].params.decimals"):
        parse_config({"compare": {"sweeps": [{"name": "defense.test-config-fake", "param": "decimals", "values": [-2]}]}}, registry=reg)
    with pytest.raises(InvalidParameterError, match=r"compare.cells\[0\].train.lr"):
        parse_config({"compare": {"cells": [{"label": "x", "train": {"lr": -1}}]}}, registry=reg)
    with pytest.raises(InvalidParameterError, match=r"data: .*needs a path"):
        parse_config({"data": {"source": "npz"}}, registry=reg)


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("attacks:\n  - name: [unclosed\n")
    with pytest.raises(InvalidParameterError, match="not valid YAML at line"):
        load_config(p)
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("attacks: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InvalidParameterError, match="not valid YAML"):
        load_config(p)


def test_example_validates_against_registry_and_schema(reg):
    jsonschema = pytest.importorskip("jsonschema")
    text = example_config(reg)
    assert text.lstrip().startswith("#") and "# " in text  # commented
    raw = yaml.safe_load(text)
    cfg = parse_config(raw, registry=reg)
    assert cfg.attacks[0].name == "mia.loss-threshold" and cfg.fail_on
    schema = config_schema(reg)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(raw, schema)
    # the schema knows each registered attack's options: a typo is rejected there too
    bad = {**raw, "attacks": [{"name": "mia.test-config-fake", "params": {"rouds": 2}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    good = {**raw, "attacks": [{"name": "mia.test-config-fake", "params": {"rounds": 2}}]}
    jsonschema.validate(good, schema)
    names = [v["properties"]["name"]["const"] for v in schema["properties"]["attacks"]["items"]["anyOf"] if v.get("type") == "object"]
    assert "mia.test-config-fake" in names and "mia.loss-threshold" in names


def test_cli_config_schema_example_check(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert main(["config", "example"]) == 0
    example = capsys.readouterr().out
    jsonschema.validate(yaml.safe_load(example), schema)
    p = tmp_path / "audit.yaml"
    p.write_text(example)
    assert main(["config", "check", str(p)]) == 0
    assert "valid" in capsys.readouterr().out
    p.write_text(example.replace("calibration:", "calibraton:"))
    assert main(["config", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "attacks[0].params.calibraton: unknown option" in err and len(err.strip().splitlines()) == 1


def test_defaults():
    cfg = AuditConfig()
    assert cfg.attack_specs() == [("mia.loss-threshold", {})] and cfg.seed == 0 and cfg.executor.name == "local"
    with pytest.raises(InvalidParameterError, match="no `data` section"):
        cfg.load_data()


def test_every_commented_attack_in_the_example_validates_when_uncommented(registry):
    import re

    lines = []
    for line in example_config(registry).splitlines():
        m = re.match(r"^  # (- name: .*|  params:|    \w+: .*)$", line)
        lines.append("  " + m.group(1) if m else line)
    cfg = parse_config(yaml.safe_load("\n".join(lines)), registry=registry)
    assert sorted(a.name for a in cfg.attacks) == registry.names("attack")
