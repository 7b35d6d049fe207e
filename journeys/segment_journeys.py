"""Segment conditions about journeys, registered with audiences at start-up:

- journey membership: `{"journey": "onboarding", "state": "in"}`;
- survey answers: `{"survey": "nps", "nps": "detractor", "within_days": 90}`;
- the `journey` message scope of the engagement condition
  (`{"engagement": "opened", "journey": "onboarding"}`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from audiences.engagement import validate_slug
from audiences.registry import (
    CompileContext,
    ConditionType,
    Errors,
    MessageScope,
    register_condition,
    register_message_scope,
)
from audiences.windows import WINDOW_KEYS, is_whole, validate_window, window_q

from .models import Enrollment, Journey, JourneyMessage, SurveyResponse

S = Enrollment.State
# "in" = still in it (running or waiting); "entered" = ever enrolled, whatever happened next.
STATES: dict[str, tuple[str, ...]] = {
    "in": (S.ACTIVE, S.WAITING),
    "entered": tuple(S.values),
    "completed": (S.COMPLETED,),
    "converted": (S.CONVERTED,),
    "exited": (S.EXITED,),
    "failed": (S.FAILED,),
}
ENDED = ("completed", "converted", "exited", "failed")
ANY_SURVEY = "*"
NPS = tuple(SurveyResponse.NpsCategory.values)
SURVEY_STATUSES = tuple(SurveyResponse.Status.values)
SCORE_OPS = ("eq", "gt", "gte", "lt", "lte")
MAX_CHOICES = 100


def _journeys(slug: str) -> QuerySet:
    # A slug names a journey across its versions (one is active at a time).
    return Journey.objects.filter(slug=slug).values("pk")


def _one_or_list(value: Any, allowed: tuple[str, ...] | None, limit: int = 10) -> list | None:
    """A string or a non-empty list of strings (each in `allowed` if given), as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 0 < len(items) <= limit:
        return None
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in items):
        return None
    if allowed is not None and not all(v in allowed for v in items):
        return None
    return items


# --- {"journey": "onboarding", "state": "in"} -------------------------------------------


def _validate_journey(cond: dict[str, Any], path: str, errors: Errors) -> None:
    validate_slug(
        cond.get("journey"), f"{path}.journey", errors, exists=Journey.objects.all(), noun="journey"
    )
    if _one_or_list(cond.get("state", "in"), tuple(STATES)) is None:
        errors.add(f"{path}.state", f"One or a list of: {', '.join(STATES)}.")
    validate_window(cond, path, errors)


def _compile_journey(cond: dict[str, Any], ctx: CompileContext) -> Q:
    which = Q(pk__isnull=True)
    for state in _one_or_list(cond.get("state", "in"), tuple(STATES)) or []:
        # The window is on when it ended for ended states, on when it entered otherwise.
        stamp = "ended_at" if state in ENDED else "entered_at"
        which |= Q(state__in=STATES[state]) & window_q(cond, ctx, stamp)
    enrollments = Enrollment.objects.filter(
        which, contact=OuterRef("pk"), journey__in=_journeys(cond["journey"])
    )
    return Q(Exists(enrollments))


# --- {"survey": "nps", "nps": "detractor", "score": {"lte": 4}, "choice": "yes"} --------


def _validate_survey(cond: dict[str, Any], path: str, errors: Errors) -> None:
    if cond.get("survey") != ANY_SURVEY:
        validate_slug(
            cond.get("survey"),
            f"{path}.survey",
            errors,
            exists=Journey.objects.all(),
            noun="journey",
        )
    if "step" in cond and not (isinstance(cond["step"], str) and 0 < len(cond["step"]) <= 64):
        errors.add(f"{path}.step", "A step key (1-64 characters).")
    if "status" in cond and _one_or_list(cond["status"], SURVEY_STATUSES) is None:
        errors.add(f"{path}.status", f"One or a list of: {', '.join(SURVEY_STATUSES)}.")
    if "nps" in cond and _one_or_list(cond["nps"], NPS) is None:
        errors.add(f"{path}.nps", f"One or a list of: {', '.join(NPS)}.")
    if "choice" in cond and _one_or_list(cond["choice"], None, MAX_CHOICES) is None:
        errors.add(f"{path}.choice", f"A choice, or a list of 1-{MAX_CHOICES} choices.")
    score = cond.get("score")
    if "score" in cond and not (
        isinstance(score, dict)
        and 0 < len(score) <= 2
        and all(op in SCORE_OPS and is_whole(n, -1000, 1000) for op, n in score.items())
    ):
        errors.add(
            f"{path}.score",
            'Comparisons eq, gt, gte, lt, lte with whole numbers, e.g. {"gte": 7, "lte": 8}.',
        )
    validate_window(cond, path, errors)


def _compile_survey(cond: dict[str, Any], ctx: CompileContext) -> Q:
    responses = SurveyResponse.objects.filter(contact=OuterRef("pk"))
    if cond["survey"] != ANY_SURVEY:
        responses = responses.filter(journey__in=_journeys(cond["survey"]))
    if "step" in cond:
        responses = responses.filter(step__key=cond["step"])
    # Answered (understood) unless it says otherwise.
    statuses = _one_or_list(cond.get("status", SurveyResponse.Status.ANSWERED), SURVEY_STATUSES)
    responses = responses.filter(status__in=statuses)
    if "nps" in cond:
        responses = responses.filter(nps_category__in=_one_or_list(cond["nps"], NPS))
    if "choice" in cond:
        responses = responses.filter(choice__in=_one_or_list(cond["choice"], None, MAX_CHOICES))
    for op, n in cond.get("score", {}).items():
        responses = responses.filter(**{f"score__{'exact' if op == 'eq' else op}": n})
    return Q(Exists(responses.filter(window_q(cond, ctx, "answered_at"))))


# --- the engagement condition's {"journey": "onboarding"} scope ------------------------


def _validate_journey_scope(value: Any, path: str, errors: Errors) -> None:
    validate_slug(value, path, errors, exists=Journey.objects.all(), noun="journey")


def _journey_messages(value: str) -> QuerySet:
    return JourneyMessage.objects.filter(journey__in=_journeys(value)).values("message_id")


JOURNEY_CONDITION = ConditionType(
    "journey",
    frozenset({"journey", "state", *WINDOW_KEYS}),
    _validate_journey,
    _compile_journey,
    "journey membership",
)
SURVEY_CONDITION = ConditionType(
    "survey",
    frozenset({"survey", "step", "status", "nps", "score", "choice", *WINDOW_KEYS}),
    _validate_survey,
    _compile_survey,
    "survey answers",
)
JOURNEY_SCOPE = MessageScope(
    "journey", _validate_journey_scope, _journey_messages, "messages a journey sent"
)


def register() -> None:
    register_condition(JOURNEY_CONDITION)
    register_condition(SURVEY_CONDITION)
    register_message_scope(JOURNEY_SCOPE)
