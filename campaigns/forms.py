"""The broadcast form marketers fill in the admin, and the confirmation forms of the review
page and the pause / resume / cancel pages. Validation is campaigns.drafts' (the API's too)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.admin import widgets as admin_widgets

from channels_app.channels import Channel
from messaging.conversion import ConversionEventsFormField

from . import drafts
from .errors import BroadcastError
from .models import Broadcast

CHANNEL_LABELS = {
    drafts.PREFERRED: "The contact's preferred channel",
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.EMAIL: "Email",
}
ORDINALS = ("1st choice", "then", "then", "then")


class ChannelOrderWidget(forms.MultiWidget):
    """Up to four drop-downs: the channel to try first, then the fallbacks, in order."""

    template_name = "admin/campaigns/broadcast/channel_order_widget.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        choices = [("", "—"), *CHANNEL_LABELS.items()]
        super().__init__([forms.Select(choices=choices) for _ in ORDINALS], attrs)

    def decompress(self, value: Any) -> list[str]:
        value = list(value or []) if isinstance(value, list | tuple) else []
        return (value + [""] * len(ORDINALS))[: len(ORDINALS)]

    def get_context(self, name: str, value: Any, attrs: dict[str, Any]) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["ordinals"] = ORDINALS
        return context


class ChannelOrderField(forms.MultiValueField):
    widget = ChannelOrderWidget

    def __init__(self, **kwargs: Any) -> None:
        choices = list(CHANNEL_LABELS.items())
        fields = [forms.ChoiceField(choices=choices, required=False) for _ in ORDINALS]
        super().__init__(fields=fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[str]) -> list[str]:
        return [c for c in data_list or [] if c]

    def prepare_value(self, value: Any) -> Any:
        return value


WEIGHT = re.compile(r"[0-9]{1,3}")


class VariantsField(forms.CharField):
    """The variants as lines of "template-family weight" ("promo-a 50"), for people; stored
    as [{"template_slug": "promo-a", "weight": 50}, …]. The draft writer checks the rest
    (2–5 of them, templates on the channels, weights 1–100, each once)."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 40, "placeholder": "promo-a 50\npromo-b 50"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(
                f"{v.get('template_slug', '')} {v.get('weight', '')}".strip()
                for v in value
                if isinstance(v, dict)
            )
        return value

    def to_python(self, value: Any) -> list[dict[str, Any]]:
        text = super().to_python(value) or ""
        variants, problems = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            parts = line.replace(",", " ").replace(":", " ").split()
            if not parts:
                continue
            # ASCII digits, at most 3 ("²" or "٣" pass isdigit(); 5000 digits overflow int())
            if len(parts) != 2 or not WEIGHT.fullmatch(parts[1]):
                problems.append(
                    f"Line {number}: write a template family and a weight, e.g. “promo-a 50”."
                )
                continue
            variants.append({"template_slug": parts[0], "weight": int(parts[1])})
        if problems:
            raise forms.ValidationError(problems)
        return variants


def template_family_choices() -> list[tuple[str, str]]:
    """Every template slug, labelled with the channels it has ("promo — SMS, Email")."""
    from messaging.models import Template

    families: dict[str, list[str]] = {}
    for slug, channel in Template.objects.order_by("slug", "channel").values_list(
        "slug", "channel"
    ):
        families.setdefault(slug, []).append(CHANNEL_LABELS.get(channel, channel))
    return [("", "—")] + [
        (slug, f"{slug} — {', '.join(channels)}") for slug, channels in families.items()
    ]


class BroadcastForm(forms.ModelForm):
    template_slug = forms.ChoiceField(
        label="Template family",
        help_text="Templates share a slug, one per channel; the channels it has are listed.",
    )
    channel_order = ChannelOrderField(
        label="Channel order",
        help_text="Tried in this order: a contact who cannot get the first (no address, no "
        "consent, no template) gets the next.",
    )
    variants = VariantsField(
        label="Message variants",
        required=False,
        help_text="Optional: 2–5 lines of “template-family weight”; each recipient gets one, "
        "in proportion to the weights (instead of the template family above).",
    )
    conversion_events = ConversionEventsFormField()

    class Meta:
        model = Broadcast
        fields = [
            "name",
            "slug",
            "description",
            "segments",
            "exclude_segments",
            "template_slug",
            "channel_order",
            "variants",
            "variant_test_percent",
            "winner_after_hours",
            "winner_metric",
            "holdout_percent",
            "category",
            "topic",
            "send_mode",
            "send_at",
            "local_send_date",
            "local_send_time",
            "throttle_per_minute",
            "end_at",
            "quiet_hours_start",
            "quiet_hours_end",
            "frequency_cap_action",
            "conversion_events",
            "conversion_window_hours",
            "revenue_property",
            "attribution_model",
        ]
        widgets = {"send_mode": forms.RadioSelect}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "template_slug" in self.fields:
            self.fields["template_slug"].choices = template_family_choices()
        if "holdout_percent" in self.fields:
            self.fields["holdout_percent"].required = False  # empty: no holdout
        for name in ("send_at", "end_at"):
            if name in self.fields:
                self.fields[name].widget = admin_widgets.AdminSplitDateTime()
                self.fields[name].help_text += " Your time zone: UTC."
        labels = {
            "segments": "Send to contacts in any of these segments",
            "exclude_segments": "…except contacts in any of these",
            "throttle_per_minute": "At most (messages per minute)",
            "end_at": "Stop sending at",
            "variant_test_percent": "Test the variants on (% of the audience)",
            "winner_after_hours": "…then send the winner to the rest after (hours)",
            "winner_metric": "…the winner being the best by",
            "holdout_percent": "Holdout (% never sent, to measure the uplift)",
            "conversion_window_hours": "Counted within (hours after the send)",
        }
        for name, label in labels.items():
            if name in self.fields:
                self.fields[name].label = label

    def clean_holdout_percent(self) -> int:
        return self.cleaned_data.get("holdout_percent") or 0

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = {name: cleaned.get(name) for name in drafts.FIELDS if name in cleaned}
        merged = {name: getattr(self.instance, name) for name in drafts.FIELDS}
        merged.update(values)
        try:
            drafts.broadcast_validate(
                values=merged,
                segments=list(cleaned.get("segments") or []),
                exclude_segments=list(cleaned.get("exclude_segments") or []),
            )
        except BroadcastError as exc:
            for name, messages in exc.errors.items():
                field = name if name in self.fields else None
                for message in messages:
                    self.add_error(field, message)
        return cleaned


class LaunchForm(forms.Form):
    confirm_name = forms.CharField(
        label="Type the broadcast's name to confirm",
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 40}),
    )

    def __init__(self, *args: Any, broadcast: Broadcast, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broadcast = broadcast

    def clean_confirm_name(self) -> str:
        typed = self.cleaned_data["confirm_name"].strip()
        if typed.casefold() != self.broadcast.name.strip().casefold():
            raise forms.ValidationError(
                f"Type “{self.broadcast.name}” exactly to launch (nothing was sent)."
            )
        return typed


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(label="Yes, I am sure", required=True)
