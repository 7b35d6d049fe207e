"""Journey statistics, computed with aggregate queries (never Python loops over rows)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, OuterRef, Q

from messaging.models import Message, Touchpoint

from .experiments import variant_of
from .models import Enrollment, Journey, JourneyMessage, Step, StepVisit, SurveyResponse
from .surveys import nps_score

SENT = ("sent", "delivered", "read")
DELIVERED = ("delivered", "read")
FAILED = ("failed", "undelivered")


def _message_counts(queryset) -> dict[str, int]:
    engagement = Touchpoint.objects.filter(message_id=OuterRef("message_id"))
    replies = Message.objects.filter(in_reply_to_id=OuterRef("message_id"))
    return queryset.annotate(
        _replied=Exists(replies),
        _opened=Exists(engagement.filter(kind="opened")),
        _clicked=Exists(engagement.filter(kind="clicked")),
    ).aggregate(
        messages=Count("pk"),
        sent=Count("pk", filter=Q(message__status__in=SENT)),
        delivered=Count("pk", filter=Q(message__status__in=DELIVERED)),
        failed=Count("pk", filter=Q(message__status__in=FAILED)),
        skipped=Count("pk", filter=Q(message__status="skipped")),
        replied=Count("pk", filter=Q(_replied=True)),
        opened=Count("pk", filter=Q(_opened=True)),
        clicked=Count("pk", filter=Q(_clicked=True)),
    )


def _variant_counts(step: Step, counted: dict[int, dict[str, int]]) -> dict[str, int]:
    """A split's visits per variant, in the step's order (0 for none yet), then any variant
    an earlier edit of the step had."""
    seen = counted.get(step.pk, {})
    listed = [
        v.get("key") for v in (step.config or {}).get("variants") or [] if isinstance(v, dict)
    ]
    return {str(k): seen.get(str(k), 0) for k in listed} | seen


def journey_stats(journey: Journey) -> dict[str, Any]:
    """Enrollment states, a funnel per step with message outcomes, and NPS."""
    enrollments = Enrollment.objects.filter(journey=journey).aggregate(
        entered=Count("pk"),
        active=Count("pk", filter=Q(state="active")),
        waiting=Count("pk", filter=Q(state="waiting")),
        completed=Count("pk", filter=Q(state="completed")),
        converted=Count("pk", filter=Q(state="converted")),
        exited=Count("pk", filter=Q(state="exited")),
        failed=Count("pk", filter=Q(state="failed")),
        holdout=Count("pk", filter=Q(holdout=True)),
    )
    visits = dict(
        StepVisit.objects.filter(step__journey=journey)
        .values("step_id")
        .annotate(n=Count("enrollment_id", distinct=True))
        .values_list("step_id", "n")
    )
    # A split step's visits per variant (the visit's outcome is "variant:<key>").
    variants: dict[int, dict[str, int]] = {}
    for step_id, outcome, n in (
        StepVisit.objects.filter(step__journey=journey, step__kind="split")
        .exclude(outcome="")
        .values("step_id", "outcome")
        .annotate(n=Count("enrollment_id", distinct=True))
        .values_list("step_id", "outcome", "n")
    ):
        variants.setdefault(step_id, {})[variant_of(outcome)] = n
    links = JourneyMessage.objects.filter(journey=journey)
    per_step = {}
    for step_id in links.values_list("step_id", flat=True).distinct():
        per_step[step_id] = _message_counts(links.filter(step_id=step_id))
    steps = [
        {
            "key": step.key,
            "kind": step.kind,
            "position": step.position,
            "entered": visits.get(step.pk, 0),
            **per_step.get(step.pk, {}),
            **({"variants": _variant_counts(step, variants)} if step.kind == "split" else {}),
        }
        for step in journey.steps.all()
    ]
    nps = SurveyResponse.objects.filter(journey=journey).aggregate(
        responses=Count("pk"),
        answered=Count("pk", filter=Q(status="answered")),
        promoters=Count("pk", filter=Q(nps_category="promoter")),
        passives=Count("pk", filter=Q(nps_category="passive")),
        detractors=Count("pk", filter=Q(nps_category="detractor")),
        unanswered=Count("pk", filter=Q(status="timed_out")),
    )
    scored = nps["promoters"] + nps["passives"] + nps["detractors"]
    nps["score"] = nps_score(nps["promoters"], nps["detractors"], scored)
    return {
        "journey": journey.slug,
        "enrollments": enrollments,
        "messages": _message_counts(links),
        "steps": steps,
        "nps": nps,
    }
