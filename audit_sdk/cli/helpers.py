"""Public helpers for plugins that add ``audit-sdk`` commands through ``register_commands``.

A plugin's command looks like a built-in one: the same ``--threads`` / ``--quiet`` options, the
same one-line errors (raise an ``AuditSDKError``: exit 2), the same registry as the rest of the run::

    from audit_sdk import hookimpl
    from audit_sdk.cli.helpers import add_compute_options, registry

    def run(args) -> int:
        acct = registry(args).create("accountant", args.accountant)
        print(acct.name)
        return 0

    @hookimpl
    def register_commands(subparsers):
        p = subparsers.add_parser("my-epsilon", help="one line shown by `audit-sdk --help`")
        p.add_argument("--accountant", default="acct.rdp", help="an accountant name")
        add_compute_options(p)
        p.set_defaults(func=run)

The core's own commands use the private ``_common`` module; this one is the stable surface.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Iterable
from typing import Any

from ..errors import InvalidParameterError
from ._common import Problems, add_threads_option

__all__ = ["Problems", "add_compute_options", "check_choice", "jsonable", "parse_key_values", "registry"]


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` and ``--quiet`` (as every computing command has); the CLI applies them before the handler runs."""
    if "--threads" not in parser._option_string_actions:
        add_threads_option(parser)
    if "--quiet" not in parser._option_string_actions:
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (results and errors still print)")


def registry(args: argparse.Namespace) -> Any:
    """The component registry of this command line (built from the plugin manager the CLI already loaded)."""
    from ..registry import get_registry

    return get_registry(getattr(args, "plugin_manager", None))


def check_choice(flag: str, value: str | None, choices: Iterable[str]) -> None:
    """Refuse a value outside ``choices`` with one line that names them and the nearest one.

    Raises:
        InvalidParameterError: ``value`` is given and not one of ``choices``.
    """
    options = tuple(choices)
    if value is None or value in options:
        return
    near = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise InvalidParameterError(f"{flag} {value!r}: expected one of {', '.join(options)}.{hint}")


def parse_key_values(flag: str, pairs: list[str] | None, *, example: str = "key=value") -> dict[str, Any]:
    """``FLAG KEY=VALUE`` pairs as a dict (VALUE read as JSON when it parses, else as a string; ``-`` in keys becomes ``_``).

    Raises:
        InvalidParameterError: a pair without ``=`` or with an odd key.
    """
    out: dict[str, Any] = {}
    for raw in pairs or []:
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace("-", "").isalnum():
            raise InvalidParameterError(f"{flag} {raw!r}: expected KEY=VALUE, e.g. {example}.")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key.replace("-", "_")] = parsed
    return out


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars and arrays as Python values, non-finite floats as null / "inf" / "-inf"."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    return value
