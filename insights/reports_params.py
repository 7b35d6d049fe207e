"""The query of a report, validated the same way for the staff page and the API: a date range
of whole UTC days (both ends included, at most MAX_DAYS) and an optional scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from channels_app.channels import Channel

from .dates import date_problem
from .reports import MAX_DAYS, DateRange

REPORTS = {
    "channels": "Channels",
    "templates": "Templates",
    "broadcasts": "Broadcasts",
    "journeys": "Journey steps",
    "links": "Links",
}
DEFAULT_DAYS = 30


class ReportQuery(forms.Form):
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    journey = forms.SlugField(required=False, max_length=100)
    broadcast = forms.SlugField(required=False, max_length=100)
    template = forms.SlugField(required=False, max_length=100)
    channel = forms.ChoiceField(required=False, choices=[("", "any"), *Channel.choices])

    def __init__(self, *args: Any, report: str = "channels", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report = report

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
            self.add_error("end", "The end date is before the start date.")
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("end", f"At most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        if self.report == "journeys" and not data.get("journey"):
            self.add_error("journey", "Choose a journey.")
        if self.report == "links" and not (
            data.get("journey") or data.get("broadcast") or data.get("template")
        ):
            self.add_error("journey", "Choose a journey, a broadcast or a template.")
        return data

    @property
    def period(self) -> DateRange:
        return DateRange(self.cleaned_data["start"], self.cleaned_data["end"])

    @property
    def scope(self) -> dict[str, str]:
        return {k: self.cleaned_data.get(k) or "" for k in ("journey", "broadcast", "template")} | {
            "channel": self.cleaned_data.get("channel") or ""
        }


def report_build(*, report: str, query: ReportQuery) -> dict[str, Any]:
    """The report `report` for a valid query."""
    from .reports import funnel_report, journey_report, link_report

    period, scope = query.period, query.scope
    if report == "journeys":
        return journey_report(journey=scope["journey"], period=period)
    if report == "links":
        return link_report(period=period, **scope)
    group = {"channels": "channel", "templates": "template", "broadcasts": "broadcast"}[report]
    return funnel_report(group=group, period=period, **scope)
