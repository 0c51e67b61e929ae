"""The core is a layer (shared/ARCHITECTURE.md, "Layers"): checked on the source, statically.

Every import counts, at module level, under ``TYPE_CHECKING`` or inside a function, because each
is a dependency someone has to untangle later:

- no import circle among the project's modules;
- no module of the core (``audit_sdk/``) imports ``audit_sdk.plugins`` or ``audit_sdk.adapters``;
- plugins and adapters import only the public core (no ``audit_sdk._x`` module and no private
  module below it, such as ``audit_sdk.cli._common``), and never another family's private module.

The graph is read with ``ast`` (nothing is imported), from the three source folders the package
maps into one namespace.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"audit_sdk": ROOT / "audit_sdk", "audit_sdk.plugins": ROOT / "plugins", "audit_sdk.adapters": ROOT / "adapters"}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The project module an imported dotted name lives in (longest matching prefix)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in MODULES:
            return candidate
    return None


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement of ``module``, wherever it stands."""
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = module.split(".") if is_pkg else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from pkg import sub" imports the submodule; "from mod import name" imports mod
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            owner = _owner(name)
            if owner is not None and owner != module:
                out.append((owner, node.lineno))
    return out


GRAPH: dict[str, list[tuple[str, int]]] = {m: _imports(m, p) for m, p in MODULES.items()}


def _is_core(module: str) -> bool:
    return not module.startswith(("audit_sdk.plugins", "audit_sdk.adapters"))


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in MODULES:
        if root in index:
            continue
        work = [(root, iter(sorted({t for t, _ in GRAPH[root]})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted({t for t, _ in GRAPH[w]}))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_graph_is_read_from_every_folder() -> None:
    # guards the guard: a broken walk would find no module and no circle
    assert {"audit_sdk.run", "audit_sdk.plugins.mia.lira", "audit_sdk.adapters.onnx"} <= set(MODULES)
    assert ("audit_sdk.interfaces", 0) not in GRAPH["audit_sdk.registry"]
    assert "audit_sdk.interfaces" in {t for t, _ in GRAPH["audit_sdk.registry"]}


def test_no_import_circle() -> None:
    cycles = _cycles()
    lines = []
    for comp in cycles:
        members = set(comp)
        edges = [f"{m} -> {t} ({_where(m, ln)})" for m in comp for t, ln in GRAPH[m] if t in members]
        lines.append(" ; ".join(edges))
    assert not cycles, "import circles:\n" + "\n".join(lines)


def test_the_core_never_imports_plugins_or_adapters() -> None:
    bad = [f"{_where(m, ln)} imports {t}" for m in MODULES if _is_core(m) for t, ln in GRAPH[m] if not _is_core(t)]
    assert not bad, "the core must reach plugins and adapters through hooks only:\n" + "\n".join(bad)


def _private(module: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in module.split("."))


def _family(module: str) -> str:
    # audit_sdk.plugins.mia._common -> audit_sdk.plugins.mia ; audit_sdk.adapters.torch.training -> audit_sdk.adapters.torch
    parts = module.split(".")
    return ".".join(parts[:3])


def test_plugins_and_adapters_import_only_the_public_core_and_their_own_private_modules() -> None:
    bad = []
    for m in MODULES:
        if _is_core(m):
            continue
        for t, ln in GRAPH[m]:
            if _is_core(t) and _private(t):
                bad.append(f"{_where(m, ln)} imports the core's private {t}")
            elif not _is_core(t) and _private(t) and _family(t) != _family(m):
                bad.append(f"{_where(m, ln)} imports another family's private {t}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .plugins.mia import lira\n", "audit_sdk.plugins.mia.lira"),
        ("def f():\n    from audit_sdk.adapters.torch import make_model\n", "audit_sdk.adapters.torch"),
    ],
)
def test_a_new_core_import_of_a_plugin_would_be_seen(tmp_path: Path, source: str, expected: str) -> None:
    # the same reader, on a fake core module: in-function and relative imports count
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    assert expected in {t for t, _ in _imports("audit_sdk.fake", fake)}
