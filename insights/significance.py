"""Treated vs control: conversion rates, uplift and whether the difference is significant.

A two-sided two-proportion test: Pearson's chi-squared on the 2×2 table without continuity
correction (the same p-value as the two-proportion z-test), or Fisher's exact test when an
expected cell count is below 5 — both from scipy. The confidence interval of the absolute
difference is Wald's (normal approximation), reported as a range of percentage points."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    treated: int
    treated_converted: int
    control: int
    control_converted: int
    treated_rate: float | None
    control_rate: float | None
    uplift_points: float | None  # treated rate − control rate, in percentage points
    uplift_relative: float | None  # (treated − control) / control, e.g. 0.25 = +25 %
    ci_low_points: float | None
    ci_high_points: float | None
    p_value: float | None
    test: str  # "chi2", "fisher" or "" (not enough data)
    significant: bool
    alpha: float = ALPHA

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compare(
    *, treated: int, treated_converted: int, control: int, control_converted: int
) -> Comparison:
    """Compare two groups' conversion counts. Counts must be 0 ≤ converted ≤ size."""
    for size, part in ((treated, treated_converted), (control, control_converted)):
        if size < 0 or part < 0 or part > size:
            raise ValueError("converted must be between 0 and the group size")
    t_rate, c_rate = _rate(treated_converted, treated), _rate(control_converted, control)
    uplift = rel = low = high = p_value = None
    test = ""
    if t_rate is not None and c_rate is not None:
        uplift = (t_rate - c_rate) * 100
        rel = (t_rate - c_rate) / c_rate if c_rate else None
        se = math.sqrt(t_rate * (1 - t_rate) / treated + c_rate * (1 - c_rate) / control)
        z = stats.norm.ppf(1 - ALPHA / 2)
        low, high = uplift - z * se * 100, uplift + z * se * 100
        table = [
            [treated_converted, treated - treated_converted],
            [control_converted, control - control_converted],
        ]
        converted = treated_converted + control_converted
        if converted == 0 or converted == treated + control:
            p_value, test = 1.0, "chi2"  # no variation at all: nothing to tell apart
        else:
            total = treated + control
            expected = min(
                size * col / total
                for size in (treated, control)
                for col in (converted, total - converted)
            )
            if expected < 5:
                p_value, test = float(stats.fisher_exact(table).pvalue), "fisher"
            else:
                result = stats.chi2_contingency(table, correction=False)
                p_value, test = float(result.pvalue), "chi2"
    return Comparison(
        treated=treated,
        treated_converted=treated_converted,
        control=control,
        control_converted=control_converted,
        treated_rate=t_rate,
        control_rate=c_rate,
        uplift_points=uplift,
        uplift_relative=rel,
        ci_low_points=low,
        ci_high_points=high,
        p_value=p_value,
        test=test,
        significant=p_value is not None and p_value < ALPHA,
    )
