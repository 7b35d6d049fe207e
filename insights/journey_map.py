"""The visual journey map's data: a journey's steps as a graph (nodes and edges from the
steps' configuration) with live counts for a date range.

Five queries whatever the volume (steps; enrollments grouped by state and step; messages
grouped by step and channel; conversions grouped by step; transitions): every figure is
counted in the database, Python only places the grouped rows on the graph.

- A node's `entered` is its step visits (StepVisit) that began in the range; each of them
  leaves along exactly one edge (the next step visited, computed with LEAD() over the
  enrollment's visits in time order), ends (completed → "end", converted → "goal"), drops
  (exited or failed there) or is still there, so a node's edge shares never exceed 1.
- `waiting` is now (live enrollments whose current step it is), whatever the range.
- `dropped` counts enrollments that ended there as exited or failed within the range.
- Messages (sent, delivered, engaged = opened, clicked or replied to) are those the step
  created within the range; `converted` the conversions credited to the step that happened
  within the range (insights.models.Conversion).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django import forms
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from journeys.models import Enrollment, Journey, JourneyMessage, Step, StepVisit
from journeys.stats import DELIVERED, FAILED, SENT
from messaging.models import Message, Touchpoint

from .dates import date_problem
from .models import Conversion

DEFAULT_DAYS = 30
MAX_DAYS = 366
ENTRY, END, GOAL = "entry", "end", "goal"
SENDING = ("send", "survey")
ENDED_BADLY = ("exited", "failed")


# --- The date range ---------------------------------------------------------------------


class MapRangeForm(forms.Form):
    """`start` and `end` (inclusive) UTC dates; the last 30 days when both are absent."""

    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("start", "end"):
            problem = date_problem(data.get(name))
            if problem:
                self.add_error(name, problem)
        if self.errors:
            return data
        today = timezone.now().astimezone(dt.UTC).date()
        end = data.get("end") or today
        start = data.get("start") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            self.add_error("end", "The end date must not be before the start date.")
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("start", f"Choose a range of at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC),
    )


# --- The graph from the configuration ---------------------------------------------------


def _node_id(key: str) -> str:
    return END if key == END else f"step:{key}"


def _duration(seconds: Any) -> str:
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        return "?"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def _channels(config: dict[str, Any]) -> list[str]:
    first = config.get("channel") or "preferred"
    fallbacks = config.get("fallback_channels") or []
    return list(dict.fromkeys([first, *[c for c in fallbacks if isinstance(c, str)]]))


def _describe(step: Step) -> str:
    """One short line a non-programmer can read under the step's name."""
    config = step.config if isinstance(step.config, dict) else {}
    if step.kind in SENDING:
        what = "Survey" if step.kind == "survey" else "Template"
        return f"{what} {config.get('template', '?')} · {' → '.join(_channels(config))}"
    if step.kind == "wait":
        if config.get("until_time"):
            return f"Wait until {config['until_time']} local time"
        return f"Wait {_duration(config.get('duration_seconds'))}"
    if step.kind == "wait_for_event":
        timeout = config.get("timeout_seconds")
        after = f", at most {_duration(timeout)}" if timeout else ""
        return f"Wait for {config.get('event', '?')}{after}"
    if step.kind == "branch":
        return f"{len(config.get('rules') or [])} rule(s), otherwise the default"
    if step.kind == "split":
        variants = [v for v in config.get("variants") or [] if isinstance(v, dict)]
        return " / ".join(f"{v.get('key', '?')} {v.get('weight', '?')}%" for v in variants)
    if step.kind == "exit":
        return f"Exit: {config.get('reason') or 'leaves the journey'}"
    return step.kind


def _rule_label(index: int, rule: dict[str, Any]) -> str:
    conditions = rule.get("when") or []
    if len(conditions) == 1 and isinstance(conditions[0], dict):
        c = conditions[0]
        value = "" if c.get("op") in ("exists", "missing") else f" {c.get('value')}"
        return f"if {c.get('field')} {c.get('op')}{value}"[:60]
    return f"rule {index + 1}"


def _exits(step: Step, following: str) -> list[tuple[str, str, str]]:
    """The step's possible ways out: (target key, label, style)."""
    config = step.config if isinstance(step.config, dict) else {}
    default = step.next_step or following
    if step.kind == "exit":
        return []
    if step.kind == "branch":
        rules = [r for r in config.get("rules") or [] if isinstance(r, dict)]
        out = [(r.get("goto") or following, _rule_label(i, r), "rule") for i, r in enumerate(rules)]
        return [*out, (config.get("default") or following, "otherwise", "default")]
    if step.kind == "split":
        return [
            (
                v.get("goto") or following,
                f"variant {v.get('key', '?')} ({v.get('weight', '?')}%)",
                "variant",
            )
            for v in config.get("variants") or []
            if isinstance(v, dict)
        ]
    if step.kind == "wait_for_event":
        timeout = config.get("timeout_seconds")
        return [
            (config.get("on_event") or default, f"on {config.get('event', 'event')}", "event"),
            (
                config.get("on_timeout") or default,
                f"timeout{f' ({_duration(timeout)})' if timeout else ''}",
                "timeout",
            ),
        ]
    return [(default, "next", "next")]


def journey_graph(journey: Journey, steps: list[Step]) -> tuple[list[dict], list[dict]]:
    """Nodes and edges from the configuration alone (no counts)."""
    trigger = f"When {journey.trigger_event or '?'}"
    nodes = [{"id": ENTRY, "kind": "entry", "label": "Entry", "detail": trigger}]
    for step in steps:
        node = {
            "id": _node_id(step.key),
            "kind": step.kind,
            "key": step.key,
            "step_id": step.pk,
            "label": step.key,
            "detail": _describe(step),
        }
        if step.kind in SENDING:
            node["channels"] = _channels(step.config if isinstance(step.config, dict) else {})
        nodes.append(node)
    nodes.append({"id": END, "kind": "end", "label": "End", "detail": "Completed the journey"})
    goals = [journey.goal_event] if journey.goal_event else []
    goals += [e for e in journey.conversion_events or [] if e not in goals]
    nodes.append(
        {
            "id": GOAL,
            "kind": "goal",
            "label": "Goal",
            "detail": f"Converted: {', '.join(goals)}" if goals else "No goal event set",
        }
    )
    keys = {s.key for s in steps}
    merged: dict[tuple[str, str], dict[str, Any]] = {}

    def add(source: str, target_key: str, label: str, style: str) -> None:
        target = _node_id(target_key) if target_key in keys or target_key == END else None
        if target is None:  # a goto to a missing step: validation reports it; draw nothing
            return
        edge = merged.setdefault(
            (source, target), {"source": source, "target": target, "labels": [], "kind": style}
        )
        if label not in edge["labels"]:
            edge["labels"].append(label)

    if steps:
        add(ENTRY, steps[0].key, "enters", "next")
    for index, step in enumerate(steps):
        following = steps[index + 1].key if index + 1 < len(steps) else END
        for target, label, style in _exits(step, following):
            add(_node_id(step.key), target, label, style)
    return nodes, list(merged.values())


# --- The counts ---------------------------------------------------------------------------

_TRANSITIONS = """
SELECT v.step_id, v.next_step_id, v.is_first,
       CASE WHEN v.next_step_id IS NOT NULL THEN ''
            WHEN e.state IN ('active', 'waiting') THEN 'waiting'
            ELSE e.state END AS fate,
       COUNT(*)
FROM (
    SELECT sv.step_id, sv.enrollment_id, sv.entered_at,
           LEAD(sv.step_id) OVER w AS next_step_id,
           ROW_NUMBER() OVER w = 1 AS is_first
    FROM {visit} sv JOIN {step} s ON s.id = sv.step_id
    WHERE s.journey_id = %s
    WINDOW w AS (PARTITION BY sv.enrollment_id ORDER BY sv.entered_at, sv.id)
) v JOIN {enrollment} e ON e.id = v.enrollment_id
WHERE v.entered_at >= %s AND v.entered_at < %s
GROUP BY 1, 2, 3, 4
"""


def _transitions(journey: Journey, start: dt.datetime, end: dt.datetime) -> list[tuple]:
    """(step id, next step id or None, first visit?, fate of a last visit, count)."""
    sql = _TRANSITIONS.format(
        visit=StepVisit._meta.db_table,
        step=Step._meta.db_table,
        enrollment=Enrollment._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [journey.pk, start, end])
        return cursor.fetchall()


def _enrollment_rows(journey: Journey, start: dt.datetime, end: dt.datetime):
    in_range = Q(entered_at__gte=start, entered_at__lt=end)
    ended = Q(ended_at__gte=start, ended_at__lt=end)
    return (
        Enrollment.objects.filter(journey=journey)
        .values("state", "current_step_id")
        .annotate(
            entered=Count("pk", filter=in_range),
            held_out=Count("pk", filter=in_range & Q(exit_reason="holdout")),
            ended=Count("pk", filter=ended),
            total=Count("pk"),
        )
        .order_by()
    )


def _message_rows(journey: Journey, start: dt.datetime, end: dt.datetime):
    touched = Touchpoint.objects.filter(
        message_id=OuterRef("message_id"), kind__in=("opened", "clicked")
    )
    replies = Message.objects.filter(in_reply_to_id=OuterRef("message_id"))
    return (
        JourneyMessage.objects.filter(journey=journey, created_at__gte=start, created_at__lt=end)
        .values("step_id", "message__channel")
        .annotate(
            messages=Count("pk"),
            sent=Count("pk", filter=Q(message__status__in=(*SENT, "undelivered"))),
            delivered=Count("pk", filter=Q(message__status__in=DELIVERED)),
            failed=Count("pk", filter=Q(message__status__in=FAILED)),
            engaged=Count("pk", filter=Q(Exists(touched)) | Q(Exists(replies))),
        )
        .order_by()
    )


def _conversion_rows(journey: Journey, start: dt.datetime, end: dt.datetime):
    return (
        Conversion.objects.filter(journey=journey, occurred_at__gte=start, occurred_at__lt=end)
        .values("step_id")
        .annotate(n=Count("pk"), revenue=Sum("revenue"))
        .order_by()
    )


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def journey_map(journey: Journey, *, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The graph with its counts between `start` and `end` (inclusive UTC dates)."""
    since, until = _bounds(start, end)
    steps = list(journey.steps.all())
    nodes, edges = journey_graph(journey, steps)
    by_step_id = {s.pk: _node_id(s.key) for s in steps}
    counts: dict[str, dict[str, Any]] = {}
    for node in nodes:
        zero = {"entered": 0}
        if node["kind"] not in ("entry", "end", "goal"):
            zero.update(waiting=0, converted=0, dropped=0)
        if node["kind"] in SENDING:
            zero.update(sent=0, delivered=0, engaged=0, failed=0)
        counts[node["id"]] = node["counts"] = zero
    counts[GOAL].update(conversions=0, revenue="0")

    held_out = 0
    for row in _enrollment_rows(journey, since, until):
        counts[ENTRY]["entered"] += row["entered"]
        held_out += row["held_out"]
        node = counts.get(by_step_id.get(row["current_step_id"]))
        if row["state"] in Enrollment.LIVE_STATES and node is not None:
            node["waiting"] += row["total"]
        elif row["state"] in ENDED_BADLY and node is not None:
            node["dropped"] += row["ended"]
        elif row["state"] == "completed":
            counts[END]["entered"] += row["ended"]
        elif row["state"] == "converted":
            counts[GOAL]["entered"] += row["ended"]

    for row in _message_rows(journey, since, until):
        node = counts.get(by_step_id.get(row["step_id"]))
        if node is None or "sent" not in node:
            continue
        for name in ("sent", "delivered", "engaged", "failed"):
            node[name] += row[name]
        per_channel = node.setdefault("by_channel", {})
        per_channel[row["message__channel"]] = {
            name: row[name] for name in ("sent", "delivered", "engaged", "failed")
        }

    revenue = 0
    for row in _conversion_rows(journey, since, until):
        counts[GOAL]["conversions"] += row["n"]
        revenue += row["revenue"] or 0
        node = counts.get(by_step_id.get(row["step_id"]))
        if node is not None and "converted" in node:
            node["converted"] += row["n"]
    counts[GOAL]["revenue"] = str(revenue)

    taken: dict[tuple[str, str], int] = defaultdict(int)
    for step_id, next_id, is_first, fate, n in _transitions(journey, since, until):
        source = by_step_id.get(step_id)
        if source is None:
            continue
        counts[source]["entered"] += n
        if is_first:
            taken[(ENTRY, source)] += n
        if next_id is not None and next_id in by_step_id:
            taken[(source, by_step_id[next_id])] += n
        elif fate == "completed":
            taken[(source, END)] += n
        elif fate == "converted":
            taken[(source, GOAL)] += n
    if held_out:
        taken[(ENTRY, END)] += held_out

    known = {(e["source"], e["target"]): e for e in edges}
    for pair in taken:
        if pair not in known:
            label, kind = {
                GOAL: ("converted", "goal"),
                END: ("held out" if pair[0] == ENTRY else "completed", "end"),
            }.get(pair[1], ("observed", "observed"))
            known[pair] = {"source": pair[0], "target": pair[1], "labels": [label], "kind": kind}
            edges.append(known[pair])
    for edge in edges:
        n = taken.get((edge["source"], edge["target"]), 0)
        edge["label"] = " / ".join(edge.pop("labels"))
        edge["count"] = n
        edge["share"] = _share(n, counts[edge["source"]]["entered"])
    return {
        "journey": {
            "id": journey.pk,
            "name": journey.name,
            "slug": journey.slug,
            "version": journey.version,
            "status": journey.status,
            "trigger_event": journey.trigger_event,
        },
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "nodes": nodes,
        "edges": edges,
    }
