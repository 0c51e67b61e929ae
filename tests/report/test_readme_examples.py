"""The audit-product config examples (moved from the README to docs/how-to/reports-and-ci.md) validate against the registered plugins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from audit_sdk.config import parse_config

PAGE = Path(__file__).parents[2] / "docs" / "how-to" / "reports-and-ci.md"


def _section() -> str:
    text = PAGE.read_text()
    assert text.count("\n# ") + text.startswith("# ") >= 1 and "# The audit as a product" in text
    return text


def test_readme_yaml_examples_validate(registry):
    blocks = re.findall(r"```yaml\n(.*?)```", _section(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        cfg = parse_config(yaml.safe_load(block), registry=registry, source="docs example")
        assert cfg.attacks


def test_readme_grid_example_expands_to_cells(registry):
    grid = [b for b in re.findall(r"```yaml\n(.*?)```", _section(), re.S) if "compare:" in b][0]
    cfg = parse_config(yaml.safe_load(grid), registry=registry)
    labels = [c.label for c in cfg.compare.expanded_cells()]
    assert labels[0] == "none" and "suppress" in labels and len(labels) == 1 + 2 + 3
