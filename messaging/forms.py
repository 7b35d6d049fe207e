"""Admin forms for staff actions that go through services (never raw model edits)."""

from __future__ import annotations

from django import forms

from channels_app.channels import Channel

from .models import ConsentStatus, Contact, Template


class SendMessageForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices)
    template = forms.ModelChoiceField(
        queryset=Template.objects.all(),
        required=False,
        help_text="Pick a template for this channel, or write the message below.",
    )
    subject = forms.CharField(required=False, max_length=500, help_text="Email only.")
    body = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="Liquid allowed."
    )

    def clean(self):
        data = super().clean()
        template = data.get("template")
        if template and template.channel != data.get("channel"):
            self.add_error("template", f"This template is for {template.get_channel_display()}.")
        if not template and not data.get("body"):
            self.add_error("body", "Write a message or pick a template.")
        return data


class ConsentForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices)
    status = forms.ChoiceField(choices=ConsentStatus.choices)
    note = forms.CharField(required=False, max_length=255, help_text="Why (kept in the history).")


class SendTestForm(forms.Form):
    # Only test contacts can be chosen; staff_test_send checks again whatever is posted.
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.filter(is_test=True, erased_at__isnull=True).order_by("-id"),
        help_text="Test contacts only (an administrator flags them on the contact's page).",
    )
