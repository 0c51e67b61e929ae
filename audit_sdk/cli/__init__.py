"""The ``audit-sdk`` command line.

Exit codes, as a test runner's: 0 ok, 1 a privacy policy (``--fail-on``) failed, 2 usage or input
error (one clear line, no traceback), 3 internal failure.

Each sub-command lives in its own module with ``add_parser(subparsers)``, which sets
``func(args) -> int`` as the handler; ``COMMANDS`` lists the modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from ..errors import AuditSDKError, PolicyViolationError
from ..progress import progress_mode
from ._common import THREADED_COMMANDS, add_threads_option, apply_threads

__all__ = ["main", "COMMANDS"]

#: Modules (relative to this package) that add sub-commands, in help order.
COMMANDS: tuple[str, ...] = (
    "plugins_cmd",
    "audit_cmd",
    "demo_cmd",
    "train_cmd",
    "epsilon_cmd",
    "dp_audit_cmd",
    "calibrate_cmd",
    "config_cmd",
    "compare_cmd",
)

EXIT_OK, EXIT_POLICY, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"audit-sdk: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="audit-sdk", description="Audit ML models for training-data leakage; train them with privacy defences.")
    parser.add_argument("--version", action="version", version=f"audit-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in COMMANDS:
        importlib.import_module(f".{mod}", __name__).add_parser(sub)
    for name in THREADED_COMMANDS:
        cmd = sub.choices.get(name)
        if cmd is not None and "--threads" not in cmd._option_string_actions:
            add_threads_option(cmd)
        if cmd is not None and "--quiet" not in cmd._option_string_actions:
            cmd.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (results and errors still print)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (also used as the console-script entry point)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        # progress of long steps on stderr (bars in a terminal, plain lines in a log); --quiet silences it
        if args.command in THREADED_COMMANDS:
            apply_threads(getattr(args, "threads", None))
        with progress_mode("off" if getattr(args, "quiet", False) else "auto"):
            return int(args.func(args) or 0)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    except PolicyViolationError as exc:
        sys.stderr.write(f"audit-sdk: policy failed: {exc}\n")
        return EXIT_POLICY
    except AuditSDKError as exc:
        sys.stderr.write(f"audit-sdk: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("audit-sdk: interrupted\n")
        return 130
    except Exception:
        sys.stderr.write("audit-sdk: internal error (please report it with the traceback below)\n")
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
