"""The journey form's trigger, in a marketer's words: "When an event happens" (the event
name, as before), "When a contact enters a segment …" or "… leaves a segment …", which
store trigger event `segment.entered` / `segment.left` and the segment's slug in the
trigger filter (journeys/segment_triggers.py)."""

from __future__ import annotations

from typing import Any

from django import forms

from audiences.models import Segment
from messaging.conversion import (
    CONVERSION_FIELDS,
    ConversionEventsFormField,
    conversion_form_clean,
)

from .keyed import match_problems
from .models import Journey
from .segment_triggers import SEGMENT_ENTERED, SEGMENT_LEFT

EVENT = "event"
TRIGGER_KINDS = [
    (EVENT, "When an event happens (the trigger event below)"),
    (SEGMENT_ENTERED, "When a contact enters a segment"),
    (SEGMENT_LEFT, "When a contact leaves a segment"),
]


class JourneyForm(forms.ModelForm):
    trigger_kind = forms.ChoiceField(
        label="Starts", choices=TRIGGER_KINDS, initial=EVENT, required=False
    )
    trigger_segment = forms.ModelChoiceField(
        label="Segment",
        queryset=Segment.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        help_text="For “enters / leaves a segment”: each entry (or exit) starts the journey "
        "once, under the entry policy. Dynamic segments follow their definition within "
        "seconds of a change; static ones when staff add contacts.",
    )
    conversion_events = ConversionEventsFormField()

    class Meta:
        model = Journey
        # (the admin narrows these to its fieldsets, minus what is read-only)
        fields = [
            "name",
            "slug",
            "description",
            "trigger_event",
            "trigger_filter",
            "entry_policy",
            "entry_key",
            "goal_event",
            "goal_match",
            "exit_event",
            "exit_match",
            "category",
            "quiet_hours_start",
            "quiet_hours_end",
            "frequency_cap_action",
            *CONVERSION_FIELDS,
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "trigger_event" in self.fields:
            self.fields["trigger_event"].required = False
            self.fields[
                "trigger_event"
            ].help_text = "For “when an event happens”: the event name, e.g. order.completed."
        trigger = self.instance.trigger_event if self.instance.pk else ""
        if trigger in (SEGMENT_ENTERED, SEGMENT_LEFT):
            self.fields["trigger_kind"].initial = trigger
            wanted = (self.instance.trigger_filter or {}).get("segment")
            if isinstance(wanted, str):
                self.fields["trigger_segment"].initial = wanted

    def _clean_match(self, name: str, where: str) -> Any:
        match = self.cleaned_data.get(name)
        problems = match_problems(match, where)
        if problems:
            raise forms.ValidationError([p.removeprefix(f"{where}: ") for p in problems])
        return match

    def clean_goal_match(self) -> Any:
        return self._clean_match("goal_match", "Goal")

    def clean_exit_match(self) -> Any:
        return self._clean_match("exit_match", "Exit")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        conversion_form_clean(self)
        for match, event, message in (
            ("goal_match", "goal_event", "A goal match needs a goal event."),
            ("exit_match", "exit_event", "An exit match needs an exit event."),
        ):
            if match in self.fields and data.get(match) and not data.get(event):
                self.add_error(match, message)
        if "trigger_event" not in self.fields:
            return data  # a live journey: its trigger is fixed (read-only)
        kind = data.get("trigger_kind") or EVENT
        if kind == EVENT:
            if not data.get("trigger_event"):
                self.add_error("trigger_event", "Name the event that starts the journey.")
            elif data["trigger_event"] in (SEGMENT_ENTERED, SEGMENT_LEFT):
                self.add_error(
                    "trigger_kind", "Choose “enters / leaves a segment” and pick the segment."
                )
            return data
        segment = data.get("trigger_segment")
        if segment is None:
            self.add_error("trigger_segment", "Pick the segment.")
            return data
        data["trigger_event"] = kind
        trigger_filter = data.get("trigger_filter")
        data["trigger_filter"] = {
            **(trigger_filter if isinstance(trigger_filter, dict) else {}),
            "segment": segment.slug,
        }
        return data
