"""Command line: ``python -m course_utils COMMAND ...``.

Commands (each lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``):

  run       execute every notebook in order, save executed copies and deliverables (runner.py)
  generate  sample digits from the trained models into an .npz file (generate.py)
  release   write the student versions of the notebooks (release.py)
  grade     grade a folder of student submissions (grading.py)
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": ("course_utils.runner", "execute every notebook in order and report wall times"),
    "generate": ("course_utils.generate", "sample digits from the trained models into an .npz file"),
    "release": ("course_utils.release", "write the student versions of the notebooks"),
    "grade": ("course_utils.grading", "grade a folder of student submissions"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (mod_name, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                raise
            continue
        modules[name] = mod
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip().split("\n")[0])
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(modules[args.command].main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
