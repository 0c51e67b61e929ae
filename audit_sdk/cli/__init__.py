"""The ``audit-sdk`` command line.

Exit codes, as a test runner's: 0 ok, 1 a privacy policy (``--fail-on``) failed, 2 usage or input
error (one clear line, no traceback), 3 internal failure (also: an attack failed; the report keeps
the others). ``--strict-plugins`` (anywhere on the line) makes a broken third-party plugin fatal
instead of skipped with a one-line warning.

Each core sub-command lives in its own module with ``add_parser(subparsers)``, which sets
``func(args) -> int`` as the handler; ``COMMANDS`` lists the modules. Plugins add theirs through
the ``register_commands(subparsers)`` hook (the DP commands ``epsilon``, ``calibrate`` and
``dp-audit`` come from the DP plugins that way); a third-party plugin that fails there loses its
commands, with one warning, and the rest of the CLI works. The plugin manager loaded for that is
the one the commands use (``audit_sdk.cli.helpers.registry(args)``), so plugins load once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import AuditSDKError, AuditSDKWarning, PolicyViolationError
from ..progress import progress_mode
from ._common import THREADED_COMMANDS, add_threads_option, apply_threads

__all__ = ["main", "COMMANDS"]

#: Modules (relative to this package) that add the core's sub-commands, in help order.
COMMANDS: tuple[str, ...] = (
    "plugins_cmd",
    "audit_cmd",
    "inspect_cmd",
    "demo_cmd",
    "train_cmd",
    "config_cmd",
    "compare_cmd",
)
#: Core commands listed after the plugins' in ``--help``: the file helpers come last, the
#: commands that compute (the core's and the plugins') first.
LISTED_LAST: tuple[str, ...] = ("config", "compare")

EXIT_OK, EXIT_POLICY, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # one line, as every other usage error (the usage is one `--help` away)
        message = " ".join(message.split())
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


class UsageError(AuditSDKError):
    """Several problems with what the user typed, found before any work started (exit 2)."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def _cli_warnings() -> Iterator[None]:
    """Print audit-sdk's warnings as one line each (``audit-sdk: warning: ...``), others as usual."""
    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if issubclass(category, AuditSDKWarning):
                sys.stderr.write(f"audit-sdk: warning: {_one_line(message) if isinstance(message, Warning) else message}\n")
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        # the command line shows audit-sdk's warnings (once each), whatever filters the host set
        warnings.filterwarnings("default", category=AuditSDKWarning)
        yield


@contextmanager
def _strict_plugins(argv: list[str]) -> Iterator[list[str]]:
    """Pull ``--strict-plugins`` out of the command line (it may stand anywhere) into the environment."""
    if "--strict-plugins" not in argv:
        yield argv
        return
    old = os.environ.get("AUDIT_SDK_STRICT_PLUGINS")
    os.environ["AUDIT_SDK_STRICT_PLUGINS"] = "1"
    try:
        yield [a for a in argv if a != "--strict-plugins"]
    finally:
        if old is None:
            os.environ.pop("AUDIT_SDK_STRICT_PLUGINS", None)
        else:
            os.environ["AUDIT_SDK_STRICT_PLUGINS"] = old


def build_parser(pm: Any = None) -> argparse.ArgumentParser:
    """The ``audit-sdk`` parser: the core's commands, then those plugins add (``register_commands``).

    Args:
        pm: the plugin manager whose plugins add commands (default: a fresh one, as
            ``get_plugin_manager()`` builds); handlers find it as ``args.plugin_manager``.

    Raises:
        PluginError: a built-in plugin fails to load; in strict mode, a third-party one too.
    """
    from ..registry import get_plugin_manager
    from ..version import __version__

    parser = _Parser(prog="audit-sdk", description="Audit ML models for training-data leakage; train them with privacy defences.")
    parser.add_argument("--version", action="version", version=f"audit-sdk {__version__}")
    parser.add_argument(
        "--strict-plugins",
        action="store_true",
        help="a broken third-party plugin is fatal (default: skipped with a warning; AUDIT_SDK_STRICT_PLUGINS=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in COMMANDS:
        importlib.import_module(f".{mod}", __name__).add_parser(sub)
    pm = pm if pm is not None else get_plugin_manager()
    parser.set_defaults(plugin_manager=pm)
    _plugin_commands(sub, pm)
    _list_last(sub, LISTED_LAST)
    for name in THREADED_COMMANDS:
        cmd = sub.choices.get(name)
        if cmd is not None and "--threads" not in cmd._option_string_actions:
            add_threads_option(cmd)
        if cmd is not None and "--quiet" not in cmd._option_string_actions:
            cmd.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (results and errors still print)")
    return parser


def _plugin_commands(sub: Any, pm: Any) -> None:
    """Call each plugin's ``register_commands``; a third-party one that raises loses what it added.

    The hook implementations are called one by one (in pluggy's order) rather than through
    ``pm.hook``, so that a failing plugin's half-added commands can be taken out again. A
    third-party plugin's implementation is already guarded by the manager (``isolate``): it
    records the fault (one warning, or a PluginError in strict mode) and returns None.
    """
    hook = getattr(pm.hook, "register_commands", None)
    if hook is None:
        return
    broken = getattr(pm, "broken", {})
    for impl in reversed(hook.get_hookimpls()):  # pluggy calls the last registered first; keep registration order
        before, actions = dict(sub.choices), list(sub._choices_actions)
        was_broken = impl.plugin_name in broken
        impl.function(*[{"subparsers": sub}[name] for name in impl.argnames])
        if impl.plugin_name in broken and not was_broken:
            sub.choices.clear()
            sub.choices.update(before)
            sub._choices_actions[:] = actions


def _list_last(sub: Any, names: Sequence[str]) -> None:
    """Move the named commands to the end of the listing (``--help`` and "invalid choice" messages)."""
    for name in names:
        if name in sub.choices:
            sub.choices[name] = sub.choices.pop(name)
    order = list(sub.choices)
    sub._choices_actions.sort(key=lambda a: order.index(a.dest) if a.dest in order else len(order))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (also used as the console-script entry point)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    with _strict_plugins(args_in) as args_in, _cli_warnings():
        try:
            return _main(args_in)
        except BrokenPipeError:
            return _broken_pipe()


def _broken_pipe() -> int:
    # the reader went away (`audit-sdk plugins --json | head`): not an error of ours. Point stdout
    # at /dev/null so the interpreter's final flush does not complain again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return EXIT_OK


def _main(argv: list[str]) -> int:
    try:
        parser = build_parser()  # loads the plugins: in strict mode a broken one is a one-line error
        args = parser.parse_args(argv)
        # progress of long steps on stderr (bars in a terminal, plain lines in a log); --quiet silences it
        if args.command in THREADED_COMMANDS or hasattr(args, "threads"):
            apply_threads(getattr(args, "threads", None))
        with progress_mode("off" if getattr(args, "quiet", False) else "auto"):
            return int(args.func(args) or 0)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    except PolicyViolationError as exc:
        sys.stderr.write(f"audit-sdk: policy failed: {_one_line(exc)}\n")
        return EXIT_POLICY
    except AuditSDKError as exc:
        sys.stderr.write(f"audit-sdk: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("audit-sdk: interrupted\n")
        return 130
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename is None:
            return _internal()
        # a path the user named cannot be read or written (permissions, a file where a folder
        # belongs, a full disk): their environment, not our bug
        sys.stderr.write(f"audit-sdk: error: {exc.strerror or _one_line(exc)}: {exc.filename!s}\n")
        return EXIT_USAGE
    except Exception:
        return _internal()


def _internal() -> int:
    sys.stderr.write("audit-sdk: internal error (please report it with the traceback below)\n")
    traceback.print_exc()
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
