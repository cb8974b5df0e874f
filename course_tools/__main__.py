"""Command line: ``python -m course_tools COMMAND ...`` (``./course.sh COMMAND`` runs it).

Commands (each module exposes ``add_arguments(parser)`` and ``main(args)``; only the chosen
one is imported, so ``release`` never loads torch):

  run       execute every notebook in order, save executed copies and deliverables (run.py)
  generate  sample digits from the trained models into an .npz file (generate.py)
  release   write the student versions of the notebooks (release.py)
  grade     grade a folder of student submissions (grading/grader.py)
  gradescope  write a Gradescope autograder bundle of the course (grading/gradescope.py)
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": ("course_tools.run", "execute every notebook in order and report wall times"),
    "generate": ("course_tools.generate", "sample digits from the trained models into an .npz file"),
    "release": ("course_tools.release", "write the student versions of the notebooks"),
    "grade": ("course_tools.grading.grader", "grade a folder of student submissions"),
    "gradescope": ("course_tools.grading.gradescope", "write a Gradescope autograder bundle of the course"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m course_tools",
                                     description="The course's commands (./course.sh COMMAND runs them).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    module = None
    for name, (mod_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(mod_name)
            module.add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
