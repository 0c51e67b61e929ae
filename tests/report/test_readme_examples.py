"""The README's audit-product config examples validate against the registered plugins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from audit_sdk.config import parse_config

README = Path(__file__).parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## The audit as a product")
    end = text.find("\n## ", start + 5)
    return text[start : end if end > 0 else None]


def test_readme_yaml_examples_validate(registry):
    blocks = re.findall(r"```yaml\n(.*?)```", _section(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        cfg = parse_config(yaml.safe_load(block), registry=registry, source="README example")
        assert cfg.attacks


def test_readme_grid_example_expands_to_cells(registry):
    grid = [b for b in re.findall(r"```yaml\n(.*?)```", _section(), re.S) if "compare:" in b][0]
    cfg = parse_config(yaml.safe_load(grid), registry=registry)
    labels = [c.label for c in cfg.compare.expanded_cells()]
    assert labels[0] == "none" and "suppress" in labels and len(labels) == 1 + 2 + 3
