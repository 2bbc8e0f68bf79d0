"""The engine command line: ``python -m engine COMMAND`` (views, animate, generate, device…).

Exit codes: 0 success; 2 bad input (one line on stderr naming the value, nothing
written); 130 cancelled (nothing written); 1 any other failure.

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments(parser)``
and ``run(args, ctx) -> Path``; those modules import only the standard library at the
top so ``--help`` and input checks stay instant (heavy imports happen inside ``run``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .checks import guard_parser
from .errors import BadInput, JobCancelled, PanoLoopError, user_error
from .progress import JobContext, stderr_progress

#: Subcommand name → module implementing it.
COMMANDS = {
    "views": "engine.views.command",
    "multicam": "engine.multicam.command",
    "animate": "engine.animate.command",
    "motion": "engine.motion",
    "generate": "engine.generate.command",
    "export": "engine.export.command",
    "device": "engine.device",
    "vr-package": "engine.export.vr_package",
    "serve": "engine.export.serve",
    "render-cluster": "engine.cluster.command",
    "worker": "engine.worker",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 2, one line) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message}")


def available_commands() -> dict[str, object]:
    """The subcommand modules that are present in this build, by name."""
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m engine`` parser with every available subcommand."""
    parser = _Parser(
        prog="python -m engine",
        description="PanoLoop engine: seamless looping 360° equirectangular video.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in available_commands().items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        guard_parser(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None, ctx: JobContext | None = None) -> int:
    """Run one subcommand; returns the process exit code.

    SIGTERM (and SIGHUP, a closed terminal) end the job as Ctrl-C does: the temporary
    output folder is removed on the way out.
    """
    ctx = ctx or JobContext(progress=stderr_progress)
    try:
        with terminate_as_interrupt():
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return 2
            result = args._module.run(args, ctx)
        if result is not None:
            print(result)
        return 0
    except JobCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:
        print(f"cancelled: {exc}; no output was written", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cancelled: interrupted; no output was written", file=sys.stderr)
        return JobCancelled.exit_code
    except (PanoLoopError, OSError, MemoryError) as exc:
        error = user_error(exc)
        if error is None:
            raise
        label = "error" if error.exit_code == 2 else "failed"
        fix = f" (fix: {error.fix})" if error.fix else ""
        print(f"{label}: {error}{fix}", file=sys.stderr)
        return error.exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every cleanup on the way runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs (main thread).

    The worker installs its own SIGTERM handler (cancel at the next step) inside, which
    takes precedence; the previous handlers are restored on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: object) -> None:
        raise Terminated(signum)

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {name: signal.signal(getattr(signal, name), on_signal) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
