"""The one convention for medians and spreads in advisor: quartiles interpolated inclusively (numpy's and pandas'
default), the spread as the interquartile range relative to the median."""

from __future__ import annotations

import statistics
from typing import Sequence


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile of ``values`` (at least one)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def relative_spread(values: Sequence[float]) -> float | None:
    """The interquartile range of ``values`` relative to their median (None when the median is not positive)."""
    q1, median, q3 = quartiles(values)
    return (q3 - q1) / median if median > 0 else None
