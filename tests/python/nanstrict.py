"""NaN-strict numeric comparisons for the tests.

A comparison passes only when `d <= tol` holds, which is false for NaN; the
patterns `d > tol -> fail` and `worst = max(worst, d)` (Python's max drops a
NaN that comes second) let a NaN pass and are not used. control() is the
negative control each test script runs: it feeds NaN and must see a failure.
"""
import math

import numpy as np


def max_abs_diff(a, b):
    """Largest |a - b| as a float: NaN when either holds a NaN, inf when the
    shapes differ, 0 for empty arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    return math.nan if np.isnan(d).any() else float(d.max())


def within(d, tol):
    """d <= tol (NaN fails); d may be an array: every element."""
    return bool(np.all(np.asarray(d) <= tol))


def worst(values):
    """The largest value, NaN when any is NaN (unlike max())."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return 0.0
    return math.nan if np.isnan(v).any() else float(v.max())


def control():
    """Negative control: a NaN must fail every helper. Raises if not."""
    nan = math.nan
    assert not within(nan, 1.0), "within(NaN) passed"
    assert not within(max_abs_diff([0.0, nan], [0.0, 0.0]), 1.0), "max_abs_diff hid a NaN"
    assert not within(worst([0.0, nan, 0.5]), 1.0) and not within(worst([nan, 0.0]), 1.0), "worst hid a NaN"
    assert not within(np.array([0.0, nan]), 1.0), "an array with a NaN passed"
    assert not np.allclose([nan], [nan]), "np.allclose(NaN, NaN) passed"
    assert within(max_abs_diff([1.0], [1.0 + 1e-9]), 1e-6), "a real pass failed"
    print("ok    control: NaN fails every comparison (nanstrict)")
