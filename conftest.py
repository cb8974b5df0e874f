"""Root pytest configuration: the suite (unit tests and notebooks) runs in the `smoke` profile.

nbval kernels inherit these variables, so every notebook trains tiny models on a small subset
and writes its outputs to a fresh temporary folder (no checkpoint from an earlier run is reused).

``./course.sh test`` (and CI) always uses `smoke`. Running pytest directly honours an explicit
``COURSE_PROFILE``, so ``COURSE_PROFILE=full pytest notebooks/`` checks the notebooks in the full
profile on a GPU: the committed outputs that depend on the profile are marked
``# NBVAL_IGNORE_OUTPUT``, and the asserts after them hold in every profile.
"""
import os
import tempfile

os.environ.setdefault("COURSE_PROFILE", "smoke")
os.environ.setdefault("COURSE_OUTPUT", tempfile.mkdtemp(prefix="course-test-"))
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(4, os.cpu_count() or 1))))


def pytest_report_header(config):
    return f"course profile: {os.environ['COURSE_PROFILE']}; outputs in {os.environ['COURSE_OUTPUT']}"
