"""benchmarks/samplers.py: the spacings its extra DDIM rows use."""
from __future__ import annotations

import pytest
import torch

from course_tools.benchmarks_md import load_script


def test_trailing_and_quadratic_spacings_are_descending_valid_timesteps():
    sm = load_script("samplers")
    trailing = sm.spaced_timesteps("trailing", 50, 1000)
    assert trailing[0] == 999 and trailing[-1] == 19 and len(trailing) == 50
    quadratic = sm.spaced_timesteps("quadratic", 50, 1000)
    assert quadratic[-1] == 0 and quadratic[0] <= 800 and 40 <= len(quadratic) <= 50
    for ts in (trailing, quadratic):
        assert (ts[:-1] > ts[1:]).all() and ts.dtype == torch.long
    with pytest.raises(ValueError, match="unknown spacing 'cosine'"):
        sm.spaced_timesteps("cosine", 50, 1000)
