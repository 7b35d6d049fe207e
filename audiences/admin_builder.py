"""The segment builder's server side: the live-count JSON endpoint the change form calls
(debounced) as the definition is edited, and the size-over-time chart (inline SVG)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from messaging.input_rules import JsonInputError, check_json

from .definition import DefinitionError
from .models import Segment
from .selectors import segment_preview

MAX_BODY = 256 * 1024  # a definition has at most 100 conditions: far below this


def _errors(errors: dict[str, list[str]], status: int) -> JsonResponse:
    return JsonResponse({"count": None, "sample": [], "errors": errors}, status=status)


def _definition_errors(exc: DefinitionError) -> dict[str, list[str]]:
    """Paths as the API names them: `definition.all[0].op`."""
    return {
        (f"definition.{path}" if path else "definition"): list(messages)
        for path, messages in exc.errors.items()
    }


def _body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY:
        raise ValueError("The request is too large.")
    try:
        data = json.loads(request.body or b"{}")
    except RecursionError:
        raise ValueError("JSON nested too deep.") from None
    if not isinstance(data, dict):
        raise ValueError("The request body must be a JSON object.")
    return data


def _unsafe(value: Any, where: str) -> dict[str, list[str]] | None:
    """The API's input rules (messaging.input_rules): NUL bytes, lone surrogates, numbers
    that are not finite and deep nesting are refused at their path, not met by the database."""
    try:
        check_json(value, max_depth=settings.API_MAX_JSON_DEPTH)
    except JsonInputError as exc:
        path = ".".join(p for p in (where, *exc.path) if p) or "__all__"
        return {path: [exc.message]}
    return None


def segment_preview_view(request: HttpRequest) -> JsonResponse:
    """POST {"definition": <object or JSON text>, "segment": <id, when editing>, "slug": …}
    → {"count": n, "sample": [{id, label, url}], "errors": {}}; field-level errors with 400.
    Needs audiences.view_segment; the sample (personal data) also messaging.view_contact."""
    if request.method != "POST":
        return _errors({"__all__": ["POST the definition."]}, 405)
    if not request.user.has_perm("audiences.view_segment"):
        return _errors({"__all__": ["You do not have permission to view segments."]}, 403)
    try:
        data = _body(request)
    except (ValueError, UnicodeDecodeError) as exc:
        return _errors({"__all__": [f"Not a JSON object: {exc}"]}, 400)
    problem = _unsafe(data, "")
    if problem:
        return _errors(problem, 400)
    definition = data.get("definition")
    if isinstance(definition, str):
        if not definition.strip():
            definition = {"all": []}
        else:
            try:
                definition = json.loads(definition)
            except (ValueError, RecursionError) as exc:
                why = "nested too deep" if isinstance(exc, RecursionError) else exc
                return _errors({"definition": [f"Not valid JSON: {why}"]}, 400)
            problem = _unsafe(definition, "definition")
            if problem:
                return _errors(problem, 400)
    slug = data.get("slug") if isinstance(data.get("slug"), str) else None
    segment_id = data.get("segment")
    if segment_id not in (None, ""):
        segment = None
        if str(segment_id).isdigit():
            segment = Segment.objects.filter(pk=int(segment_id)).only("slug", "kind").first()
        if segment is None:
            return _errors({"segment": [f"There is no segment {segment_id}."]}, 400)
        if segment.kind == Segment.Kind.STATIC:
            return _errors({"definition": ["Static segments have no definition."]}, 400)
        slug = segment.slug
    try:
        preview = segment_preview(definition=definition, slug=slug or None, now=timezone.now())
    except DefinitionError as exc:
        return _errors(_definition_errors(exc), 400)
    except OperationalError:
        return _errors(
            {"__all__": ["Counting took too long; save the segment and let it recompute."]}, 503
        )
    sample = []
    if request.user.has_perm("messaging.view_contact"):
        sample = [
            {
                "id": c.pk,
                "label": str(c),
                "url": reverse("admin:messaging_contact_change", args=[c.pk]),
            }
            for c in preview.sample
        ]
    return JsonResponse({"count": preview.count, "sample": sample, "errors": {}})


def builder_options(*, exclude: str | None) -> dict[str, Any]:
    """What the visual builder offers: contact fields, channels, topics, the other segments."""
    from channels_app.channels import Channel
    from messaging.models import Topic

    from .conditions import TEXT_FIELDS

    segments = Segment.objects.exclude(slug=exclude or "").order_by("name")
    return {
        "fields": list(TEXT_FIELDS),
        "channels": list(Channel.values),
        "topics": [
            {"slug": s, "name": n}
            for s, n in Topic.objects.order_by("position", "name").values_list("slug", "name")
        ],
        "segments": [{"slug": s, "name": n} for s, n in segments.values_list("slug", "name")],
    }


# --- Size over time ------------------------------------------------------------------------

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 560, 140, 48, 18, 8


def size_chart_svg(points: list[tuple[dt.datetime, int]], *, now: dt.datetime, days: int) -> str:
    """A small step chart of member counts from the first sample of the last `days` days to
    now: each hour's size holds until the next sample (inline SVG; text escaped by
    format_html)."""
    if not points:
        return format_html("<p>{}</p>", "No sizes recorded yet: they come with each recompute.")
    start = max(now - dt.timedelta(days=days), points[0][0])
    span = max((now - start).total_seconds(), 60.0)
    top = max(n for _, n in points) or 1
    inner_w, inner_h = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM

    def x(at: dt.datetime) -> float:
        return round(LEFT + inner_w * max(0.0, (at - start).total_seconds()) / span, 1)

    def y(n: int) -> float:
        return round(TOP + inner_h - inner_h * n / top, 1)

    steps: list[tuple[float, float]] = []
    for i, (at, n) in enumerate(points):
        until = points[i + 1][0] if i + 1 < len(points) else now
        steps += [(x(at), y(n)), (x(until), y(n))]
    line = " ".join(f"{px},{py}" for px, py in steps)
    area = f"{steps[0][0]},{y(0)} {line} {steps[-1][0]},{y(0)}"
    last = points[-1][1]
    return format_html(
        '<svg class="segment-size-chart" role="img" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" aria-label="{label}" font-size="11" font-family="sans-serif">'
        '<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>'
        '<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#999"/>'
        '<text x="{tx}" y="{ty_top}" text-anchor="end">{top_n}</text>'
        '<text x="{tx}" y="{base}" text-anchor="end">0</text>'
        '<text x="{left}" y="{h}" dy="-2">{since}</text>'
        '<text x="{right}" y="{h}" dy="-2" text-anchor="end">now</text>'
        '<polygon fill="#79aec8" fill-opacity="0.35" points="{area}"/>'
        '<polyline fill="none" stroke="#417690" stroke-width="2" points="{line}"/>{dots}</svg>'
        "<p>{last} members now · highest {top_n} · since {since} (UTC, one sample an hour)</p>",
        w=WIDTH,
        h=HEIGHT,
        label=f"Members over time: {last} now",
        left=LEFT,
        right=WIDTH - 4,
        top=TOP,
        base=y(0),
        tx=LEFT - 4,
        ty_top=TOP + 8,
        top_n=top,
        since=f"{start:%Y-%m-%d %H:00}",
        area=area,
        line=line,
        dots=format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="2.5" fill="#417690"><title>{}</title></circle>',
            ((x(at), y(n), f"{at:%Y-%m-%d %H:00}: {n}") for at, n in points),
        ),
        last=last,
    )
