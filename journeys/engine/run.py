"""One advance's working state: the enrollment, its journey's steps, what a step
handler returns, and the rows a batch defers to write together."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

from messaging.models import Touchpoint
from messaging.services import touchpoints_write

from .. import services
from ..ending import ENDED_FIELDS
from ..models import Enrollment, Step, StepVisit


@dataclass
class Continue:
    next_key: str = ""  # "" → the step's next_step, else the following one; "end" completes


@dataclass
class Wait:
    until: dt.datetime | None
    waiting_for: str = ""


@dataclass
class End:
    state: str
    reason: str = ""


SAVED_FIELDS = [
    "state",
    "current_step",
    "next_run_at",
    "waiting_for",
    "wait_until",
    "wake_event",
    "context",
    "updated_at",
]


def _update_rows(enrollments: list[Enrollment], names: list[str]) -> None:
    """One `UPDATE ... FROM (VALUES ...)` for these rows and fields. (QuerySet.bulk_update
    builds a CASE per field and row: 3 ms of Python per enrollment, more than the engine.)
    The casts are PostgreSQL's; elsewhere (the embedded SQLite) bulk_update does it."""
    if connection.vendor != "postgresql":
        Enrollment.objects.bulk_update(enrollments, names)
        return
    fields = [Enrollment._meta.pk] + [Enrollment._meta.get_field(name) for name in names]
    row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in fields) + ")"
    columns = [connection.ops.quote_name(f.column) for f in fields]
    sql = (
        "UPDATE {table} AS t SET {sets} FROM (VALUES {rows}) AS v ({columns}) WHERE t.{pk} = v.{pk}"
    )
    sql = sql.format(
        table=connection.ops.quote_name(Enrollment._meta.db_table),
        sets=", ".join(f"{c} = v.{c}" for c in columns[1:]),
        rows=", ".join([row] * len(enrollments)),
        columns=", ".join(columns),
        pk=columns[0],
    )
    params = [
        f.get_db_prep_save(getattr(enrollment, f.attname), connection)
        for enrollment in enrollments
        for f in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass
class Deferred:
    """Rows an advance of several enrollments writes in one statement each, later in their
    shared transaction: the enrollments' own rows (all of their ENDED_FIELDS, which include
    SAVED_FIELDS: the rows are locked and were read in this transaction), the engine's
    touchpoints and step visits."""

    enrollments: list[Enrollment] = field(default_factory=list)
    touchpoints: list[Touchpoint] = field(default_factory=list)
    visits: list[StepVisit] = field(default_factory=list)

    def write(self) -> None:
        if self.enrollments:
            updated_at = timezone.now()  # bulk_update does not run auto_now
            for enrollment in self.enrollments:
                enrollment.updated_at = updated_at
            _update_rows(self.enrollments, ENDED_FIELDS)
        touchpoints_write(self.touchpoints)
        if self.visits:
            StepVisit.objects.bulk_create(self.visits)
        self.enrollments, self.touchpoints, self.visits = [], [], []


@dataclass
class Run:
    enrollment: Enrollment
    steps: list[Step]
    now: dt.datetime
    deferred: Deferred | None = None
    by_key: dict[str, Step] = field(init=False)
    # The visit `_enter` wrote last (a split step records its variant on it).
    visit: StepVisit | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.by_key = {s.key: s for s in self.steps}

    @property
    def journey(self):
        return self.enrollment.journey

    @property
    def contact(self):
        return self.enrollment.contact

    @property
    def event(self) -> dict[str, Any]:
        return self.enrollment.context.get("event", {})

    def output(self, step: Step, **values: Any) -> None:
        self.enrollment.context.setdefault("steps", {})[step.key] = {
            **self.enrollment.context.get("steps", {}).get(step.key, {}),
            **values,
        }

    def visit_outcome(self, step: Step, outcome: str) -> None:
        """Record the outcome on this step's visit (deferred: before it is written)."""
        visit = self.visit
        if visit is None or visit.step_id != step.pk:
            StepVisit.objects.filter(enrollment=self.enrollment, step=step, outcome="").update(
                outcome=outcome
            )
            return
        visit.outcome = outcome
        if visit.pk is not None:
            StepVisit.objects.filter(pk=visit.pk).update(outcome=outcome)

    def touch(self, kind: str, step: Step | None, dedupe: str | None = None, **data: Any) -> None:
        services.journey_touchpoint(
            self.enrollment,
            kind,
            data={"step": step.key if step else "", **data},
            dedupe=dedupe,
            occurred_at=self.now,
            channel=data.get("channel", ""),
            defer_to=self.deferred.touchpoints if self.deferred else None,
        )

    def end(self, state: str, reason: str = "") -> None:
        services.enrollment_end(
            self.enrollment,
            state=state,
            reason=reason,
            now=self.now,
            defer_to=self.deferred.touchpoints if self.deferred else None,
            save=self.deferred is None,
        )
        if self.deferred:
            self.deferred.enrollments.append(self.enrollment)

    def save(self) -> None:
        if self.deferred:
            self.deferred.enrollments.append(self.enrollment)
        else:
            self.enrollment.save(update_fields=SAVED_FIELDS)


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
