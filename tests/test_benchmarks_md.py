"""course_tools.benchmarks_md: each benchmark script rewrites only its own block of BENCHMARKS.md."""
from __future__ import annotations

import pytest

from course_tools.benchmarks_md import replace_block


def test_a_block_is_replaced_in_place_and_appended_when_missing(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nkept above\n<!-- a: begin -->\nold\n<!-- a: end -->\nkept below\n")
    replace_block(path, "<!-- a: begin -->", "<!-- a: end -->", "<!-- a: begin -->\nnew\n<!-- a: end -->")
    assert path.read_text() == "# Benchmarks\n\nkept above\n<!-- a: begin -->\nnew\n<!-- a: end -->\nkept below\n"
    replace_block(path, "<!-- b: begin -->", "<!-- b: end -->", "<!-- b: begin -->\nb\n<!-- b: end -->")
    assert path.read_text().endswith("kept below\n\n<!-- b: begin -->\nb\n<!-- b: end -->\n")
    with pytest.raises(ValueError, match="must start with"):
        replace_block(path, "<!-- a: begin -->", "<!-- a: end -->", "no markers")


def test_every_script_block_of_benchmarks_md_is_marked_once():
    """benchmarks/run.py rewrites only its own block, so the markers it looks for must be in the file, once."""
    from pathlib import Path
    from course_tools.benchmarks_md import load_script
    text = (Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text()
    run = load_script("run")
    assert text.count(run.BEGIN) == 1 and text.count(run.END) == 1 and text.index(run.BEGIN) < text.index(run.END)
    assert text.startswith("# Benchmarks\n")                      # the hand-written top stays outside every block
