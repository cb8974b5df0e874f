"""Root pytest configuration: the whole suite (unit tests and notebooks) runs in the `smoke` profile.

nbval kernels inherit these variables, so every notebook trains tiny models on a small subset
and writes its outputs to a fresh temporary folder (no checkpoint from an earlier run is reused).
"""
import os
import tempfile

os.environ["COURSE_PROFILE"] = "smoke"
os.environ.setdefault("COURSE_OUTPUT", tempfile.mkdtemp(prefix="course-test-"))
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(4, os.cpu_count() or 1))))
