"""Validating a broadcast's experiment settings (variants, test-then-winner, holdout), for
the draft writer (admin, API) and the launch alike. Field-level messages, nothing written."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from channels_app.channels import Channel
from messaging.models import Template

from ..models import Broadcast

MIN_VARIANTS, MAX_VARIANTS = 2, 5
MAX_WEIGHT = 100
MAX_HOLDOUT = 50
MAX_TEST_PERCENT = 50
MAX_WINNER_HOURS = 168
SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")


def _channels(order: Any) -> list[str]:
    order = order if isinstance(order, list) else []
    if "preferred" in order:
        return list(Channel.values)
    return [c for c in order if c in Channel.values]


def _percent(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def experiment_errors(
    broadcast: Broadcast, *, start: dt.datetime | None = None
) -> dict[str, list[str]]:
    """What is wrong with the broadcast's experiment settings, by field. `start` (the first
    send time, at launch) also checks that the winner comes before the send window ends."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    variants = broadcast.variants
    if variants in (None, ""):
        variants = []
    keys: list[str] = []
    if not isinstance(variants, list):
        add("variants", 'Give a list of variants, e.g. [{"template_slug": "a", "weight": 50}].')
        variants = []
    elif variants and not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        add("variants", f"Give {MIN_VARIANTS} to {MAX_VARIANTS} variants (or none).")
    for number, variant in enumerate(variants, start=1):
        if not isinstance(variant, dict) or set(variant) - {"template_slug", "weight"}:
            add("variants", f"Variant {number}: give a template_slug and a weight, nothing else.")
            continue
        slug, weight = variant.get("template_slug"), variant.get("weight")
        if not isinstance(slug, str) or not SLUG.match(slug):
            add("variants", f"Variant {number}: the template family must be a slug.")
            continue
        if not _percent(weight, 1, MAX_WEIGHT):
            add("variants", f"Variant {number} ({slug}): the weight is a whole number 1–100.")
        if slug in keys:
            add("variants", f"Variant {number}: {slug!r} is already a variant (each once).")
        keys.append(slug)
    if keys:
        channels = _channels(broadcast.channel_order)
        have = set(
            Template.objects.filter(slug__in=keys, channel__in=channels).values_list(
                "slug", flat=True
            )
        )
        for slug in dict.fromkeys(keys):
            if slug not in have:
                add(
                    "variants",
                    f"No template {slug!r} exists for any of the channels {', '.join(channels)}.",
                )
    holdout = broadcast.holdout_percent
    if holdout is not None and not _percent(holdout, 0, MAX_HOLDOUT):
        add("holdout_percent", f"Between 0 and {MAX_HOLDOUT} %.")
    test, hours, metric = (
        broadcast.variant_test_percent,
        broadcast.winner_after_hours,
        broadcast.winner_metric or "",
    )
    if test is not None and not _percent(test, 1, MAX_TEST_PERCENT):
        add("variant_test_percent", f"Between 1 and {MAX_TEST_PERCENT} %.")
    if hours is not None and not _percent(hours, 1, MAX_WINNER_HOURS):
        add("winner_after_hours", f"Between 1 and {MAX_WINNER_HOURS} hours.")
    if metric and metric not in Broadcast.WinnerMetric.values:
        add("winner_metric", f"Choose one of: {', '.join(Broadcast.WinnerMetric.values)}.")
    given = {
        "variant_test_percent": test is not None,
        "winner_after_hours": hours is not None,
        "winner_metric": bool(metric),
    }
    if any(given.values()):
        for name, present in given.items():
            if not present:
                add(name, "Give the test share, the hours to wait and the metric together.")
        if len(keys) < MIN_VARIANTS:
            add("variants", "Testing then sending the winner needs at least two variants.")
    if any(given.values()) and broadcast.send_mode == Broadcast.SendMode.LOCAL:
        # The winner would be chosen a fixed time after the first zone's send, before the
        # later zones' test groups were sent: refused (docs/BROADCASTS-experiments.md).
        add(
            "variant_test_percent",
            "Testing then sending the winner cannot be used with a local send time: "
            "send the variants by weight, or send at one time.",
        )
    if metric == Broadcast.WinnerMetric.CONVERTED and not broadcast.conversion_events:
        add("winner_metric", "Choosing by conversions needs the conversion events.")
    if (
        start is not None
        and broadcast.end_at
        and all(given.values())
        and _percent(hours, 1, MAX_WINNER_HOURS)
        and broadcast.end_at <= start + dt.timedelta(hours=hours)
    ):
        add(
            "winner_after_hours",
            "The send window ends before the winner would be chosen: the rest would never be sent.",
        )
    return errors
