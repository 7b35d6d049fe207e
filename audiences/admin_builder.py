"""The segment builder's server side: the live-count JSON endpoint the change form calls
(debounced) as the definition is edited, and the size-over-time chart (inline SVG)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

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
    data = json.loads(request.body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("The request body must be a JSON object.")
    return data


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
    definition = data.get("definition")
    if isinstance(definition, str):
        if not definition.strip():
            definition = {"all": []}
        else:
            try:
                definition = json.loads(definition)
            except ValueError as exc:
                return _errors({"definition": [f"Not valid JSON: {exc}"]}, 400)
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


# --- Size over time ------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 560, 120, 4


def size_chart_svg(points: list[tuple[dt.datetime, int]], *, now: dt.datetime, days: int) -> str:
    """A small line chart of member counts over the last `days` days (inline SVG; text
    escaped by format_html)."""
    if not points:
        return format_html("<p>{}</p>", "No sizes recorded yet: they come with each recompute.")
    start = now - dt.timedelta(days=days)
    span = (now - start).total_seconds()
    top = max(n for _, n in points) or 1

    def xy(at: dt.datetime, n: int) -> tuple[float, float]:
        x = PAD + (WIDTH - 2 * PAD) * max(0.0, (at - start).total_seconds()) / span
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * n / top
        return round(x, 1), round(y, 1)

    coords = [xy(at, n) for at, n in points]
    if len(coords) == 1:
        coords.append((WIDTH - PAD, coords[0][1]))
    line = " ".join(f"{x},{y}" for x, y in coords)
    first, last = points[0], points[-1]
    return format_html(
        '<svg class="segment-size-chart" role="img" width="{}" height="{}" viewBox="0 0 {} {}"'
        ' aria-label="{}"><rect width="100%" height="100%" fill="none" stroke="#ddd"/>'
        '<polyline fill="none" stroke="#417690" stroke-width="2" points="{}"/>{}</svg>'
        "<p>{} members now · highest {} · since {} (last {} days, UTC)</p>",
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        f"Members over the last {days} days",
        line,
        format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="2" fill="#417690"><title>{}</title></circle>',
            (
                (x, y, f"{at:%Y-%m-%d %H:00}: {n}")
                # (a single sample is drawn as a flat line: coords has one more point)
                for (x, y), (at, n) in zip(coords, points, strict=False)
            ),
        ),
        last[1],
        top,
        f"{first[0]:%Y-%m-%d %H:00}",
        days,
    )
