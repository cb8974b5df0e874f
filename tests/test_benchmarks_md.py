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
