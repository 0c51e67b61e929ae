"""Make ``audit_sdk.plugins`` and ``audit_sdk.adapters`` importable from a source checkout.

The distribution maps three top-level folders into one import namespace (``audit_sdk`` <- ``audit_sdk/``,
``audit_sdk.plugins`` <- ``plugins/``, ``audit_sdk.adapters`` <- ``adapters/``). An installed package (wheel or
editable) resolves the mapping itself. But when the repository root is on ``sys.path`` ahead of the installed
package (``python -m pytest``, ``python -c`` or a Ray worker started in the repository root), Python imports
``audit_sdk`` from the source folder, which holds no ``plugins/`` or ``adapters/``, and every plugin import fails.

This module adds one narrow finder for exactly those two names, active only when ``audit_sdk`` itself was imported
from a source checkout (its folder has no ``plugins/`` inside, and the checkout's ``pyproject.toml`` names this
distribution). It resolves them to the checkout's sibling folders, the same files an editable install maps, so each
module is imported once under one name. A wheel install never activates it (its ``audit_sdk/plugins`` exists).
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

#: the sub-packages the distribution maps from top-level folders of the repository
MAPPED = ("plugins", "adapters")
PACKAGE = "audit_sdk"


class SourceTreeFinder:
    """Find ``audit_sdk.plugins`` / ``audit_sdk.adapters`` in the checkout that ``audit_sdk`` came from."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, child = fullname.partition(".")
        if package != PACKAGE or child not in MAPPED:
            return None
        folder = self.root / child
        init = folder / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(folder)])

    def __repr__(self) -> str:
        return f"SourceTreeFinder({str(self.root)!r})"


def checkout_root(package_dir: Path) -> Path | None:
    """The repository root when ``package_dir`` is the ``audit_sdk/`` folder of a checkout, else None."""
    if any((package_dir / name).is_dir() for name in MAPPED):
        return None  # an installed package: the mapped folders are inside it
    root = package_dir.parent
    if not all((root / name / "__init__.py").is_file() for name in MAPPED):
        return None
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return root if 'name = "audit-sdk"' in text else None


def install(package_dir: Path) -> SourceTreeFinder | None:
    """Register the finder (once) when ``audit_sdk`` was imported from a checkout; return it, or None."""
    root = checkout_root(package_dir)
    if root is None:
        return None
    for finder in sys.meta_path:
        if isinstance(finder, SourceTreeFinder) and finder.root == root:
            return finder
    finder = SourceTreeFinder(root)
    # after the standard path finder and any editable-install finder: those resolve the same files when present
    sys.meta_path.append(finder)
    return finder


install(Path(__file__).resolve().parent)
