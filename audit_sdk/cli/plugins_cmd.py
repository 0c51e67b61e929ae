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
    from ..registry import get_registry

    reg = get_registry()
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
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="audit-sdk components")
    table.add_column("kind", no_wrap=True)
    table.add_column("name", no_wrap=True)
    for col in ("summary", "options", "package"):
        table.add_column(col)
    for i in infos:
        opts = ", ".join(f"{k}={v.get('default', '?')!r}" for k, v in i["options"].get("properties", {}).items())
        table.add_row(i["kind"], i["name"], i["summary"], opts, f"{i['package']} {i['version']}".strip())
    console.print(table)
    ptable = Table(title="plugins")
    for col in ("plugin", "package", "hooks"):
        ptable.add_column(col)
    for p in plugins:
        status = ", ".join(p["hooks"]) if p["status"] == "ok" else f"BROKEN ({p['stage']}): {p['error']}"
        ptable.add_row(p["name"], f"{p['package']} {p['version']}".strip(), status)
    console.print(ptable)
    return 0
