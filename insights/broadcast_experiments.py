"""The significance of a broadcast's holdout comparison: campaigns counts control and
treated conversions (campaigns/experiment_report.py) but must not import insights, so
insights hands it its two-proportion test when the app loads (dependencies point one way:
insights → campaigns)."""

from __future__ import annotations

from typing import Any

from campaigns.experiment_report import significance_register

from .significance import compare


def broadcast_compare(
    *, treated: int, treated_converted: int, control: int, control_converted: int
) -> dict[str, Any]:
    return compare(
        treated=treated,
        treated_converted=treated_converted,
        control=control,
        control_converted=control_converted,
    ).as_dict()


def register() -> None:
    significance_register(broadcast_compare)
