"""Command-line entry points. Each command lives in its own module, imported only
when it runs, so ``denoise-image`` never needs bpy and ``--help`` stays fast.

A command module provides ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors from the core (DenoiseError) become a one-line
message and exit status 1.

The installed extension registers the same commands with Blender, for farms that have
only the Blender binary: ``blender -c ai_denoise render-denoise scene.blend -o out/``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

# command name -> module (relative to this package)
COMMANDS: dict[str, str] = {
    "demo": ".demo",
    "denoise-image": ".denoise_image",
    "generate-dataset": ".generate_dataset",
    "render-denoise": ".render_denoise",
}


def _available() -> dict[str, ModuleType]:
    return {name: importlib.import_module(mod, __name__) for name, mod in COMMANDS.items()}


EXIT_CODES = (
    "exit status: 0 everything done; 1 an error, or some inputs failed (each named on its own 'error:' line, "
    "the others written); 2 bad usage (unknown option, missing argument)"
)
BLENDER_COMMAND = "ai_denoise"  # `blender -c ai_denoise ...` (an identifier, as Blender requires)


def main(argv: Sequence[str] | None = None, prog: str = "python -m blender_denoise_addon") -> int:
    from ..core.atomic import stop_on_signals
    from ..core.errors import DenoiseError

    mods = _available()
    parser = argparse.ArgumentParser(prog=prog, description="AI denoiser for Blender renders.", epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, mod in mods.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, epilog=EXIT_CODES)  # type: ignore[attr-defined]
        mod.add_arguments(p)  # type: ignore[attr-defined]
        p.set_defaults(_run=mod.run)  # type: ignore[attr-defined]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or bad arguments: argparse has printed why
        return int(e.code or 0)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # a command may run itself again
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP stop as Ctrl-C does: nothing half-written stays
            return int(args._run(args) or 0)
    except DenoiseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def blender_command(argv: Sequence[str]) -> int:
    """What ``blender -c ai_denoise ARGS`` runs (registered by the add-on's register())."""
    return main(list(argv), prog=f"blender -c {BLENDER_COMMAND}")
