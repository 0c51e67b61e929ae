"""``audit-sdk plugins [--json]``: list registered components with their options and package."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list attacks, defenses, mechanisms and accountants, and the hooks of each plugin")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .helpers import registry as cli_registry

    reg = cli_registry(args)
    pm = reg.pm
    infos = []
    for info in reg.infos():
        try:
            infos.append(info.to_dict())
        except Exception as exc:  # noqa: BLE001 - a third-party class whose options cannot be described
            if not pm.is_isolated(info.plugin):  # type: ignore[attr-defined]
                raise
            pm.plugin_fault(info.plugin, "options schema", exc)  # type: ignore[attr-defined]
    broken = {name: b.to_dict() for name, b in pm.broken.items()}  # type: ignore[attr-defined]
    infos = [i for i in infos if i["plugin"] not in broken]
    plugins = []
    for name, plugin in pm.list_name_plugin():
        if name in broken:
            continue
        dist, version = pm.distributions.get(name, (getattr(plugin, "__name__", str(plugin)), ""))  # type: ignore[attr-defined]
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        plugins.append({"name": name, "package": dist, "version": version, "hooks": hooks, "status": "ok"})
    for b in broken.values():
        plugins.append({**b, "hooks": [], "status": "broken"})
    if args.json:
        json.dump({"components": infos, "plugins": plugins, "broken": list(broken.values())}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    import shutil
    import textwrap

    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 120))

    def wrap(text: str, indent: str) -> str:
        # every word shown, wrapped to the terminal: nothing is cut at the right edge
        return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)

    kinds = {"attack": "attacks", "defense": "defenses", "mechanism": "mechanisms", "accountant": "accountants"}
    lines: list[str] = []
    for kind in ("attack", "defense", "mechanism", "accountant"):
        group = [i for i in infos if i["kind"] == kind]
        if not group:
            continue
        lines.append(f"{kinds[kind]} ({len(group)})")
        for i in group:
            lines.append(wrap(f"{i['name']}  [{i['package']} {i['version']}]".rstrip(), "  "))
            if i["summary"]:
                lines.append(wrap(i["summary"], "      "))
            opts = _options(reg, kind, i["name"], i["options"])
            if opts:
                lines.append(wrap("options: " + ", ".join(opts), "      "))
        lines.append("")
    lines.append(f"plugins ({len(plugins)})")
    for p in plugins:
        status = (": " + ", ".join(p["hooks"]) if p["hooks"] else "") if p["status"] == "ok" else f": BROKEN ({p['stage']}): {p['error']}"
        lines.append(wrap(f"{p['name']}  [{p['package']} {p['version']}]".rstrip() + status, "  "))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _options(reg: Any, kind: str, name: str, schema: dict[str, Any]) -> list[str]:
    """``key=default`` per option; a default built by a factory is shown as built, a required one as such."""
    fields: dict[str, Any] = {}
    try:
        fields = dict(reg.get(kind, name).Params.model_fields)
    except Exception:  # noqa: BLE001 - a component without a pydantic Params: fall back to the schema
        fields = {}
    out = []
    for key, prop in schema.get("properties", {}).items():
        f = fields.get(key)
        if f is not None:
            if f.is_required():
                out.append(f"{key} (required)")
                continue
            out.append(f"{key}={f.get_default(call_default_factory=True)!r}")
        elif "default" in prop:
            out.append(f"{key}={prop['default']!r}")
        else:
            out.append(f"{key} (required)")
    return out
