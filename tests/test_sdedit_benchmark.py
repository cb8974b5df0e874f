"""benchmarks/sdedit_3_to_8.py: notebook 06's class-to-class SDEdit, measured on the shipped cfg model."""
from __future__ import annotations

import pytest

from course_tools.benchmarks_md import load_script


def test_rows_are_fractions_of_the_edits_and_the_table_lists_every_level():
    sm = load_script("sdedit_3_to_8")
    rows = sm.measure(2, 1.5, levels=(20,))                       # 2 real 3s, 5 denoising steps
    assert [r["i_start"] for r in rows] == [20] and 0 < rows[0]["t"] < 1000
    r = rows[0]
    assert 0 <= r["as_target"] + r["as_source"] <= 1 and r["as_target"] in (0, 0.5, 1)
    block = sm.table(rows, 2, 1.5)
    assert block.startswith(sm.BEGIN) and block.endswith(sm.END) and f"| 20 | {r['t']} |" in block


def test_a_sample_count_below_one_is_refused():
    with pytest.raises(ValueError, match="n must be at least 1"):
        load_script("sdedit_3_to_8").measure(0, 1.5)
