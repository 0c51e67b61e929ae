"""``audit-sdk config schema | example | check FILE``: the audit config's JSON Schema, a commented example, a validator."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="audit config files: print the JSON Schema or a commented example, or check a file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    csub.add_parser("schema", help="print the JSON Schema of audit configs (with every registered attack's options)").set_defaults(
        func=run_schema
    )
    csub.add_parser("example", help="print a commented YAML config that validates").set_defaults(func=run_example)
    chk = csub.add_parser("check", help="validate a YAML/JSON config; print the errors with their field paths")
    chk.add_argument("file", help="the YAML or JSON config to check")
    chk.set_defaults(func=run_check)


def run_schema(args: argparse.Namespace) -> int:
    from ..config import config_schema

    sys.stdout.write(json.dumps(config_schema(), indent=2) + "\n")
    return 0


def run_example(args: argparse.Namespace) -> int:
    from ..config import example_config

    sys.stdout.write(example_config())
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.file)
    print(f"{args.file}: valid ({len(cfg.attacks)} attack(s){', compare grid' if cfg.compare else ''})")
    return 0
