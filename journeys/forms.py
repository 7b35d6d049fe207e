"""Admin forms: a step form that shows only its kind's fields and builds the JSON config."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join

from channels_app.channels import Channel
from messaging.input_rules import validate_safe_json

from .experiments import MAX_VARIANTS, variants_problems
from .keyed import match_problems
from .models import Step

CHANNEL_CHOICES = [
    ("preferred", "Contact's preferred channel"),
    ("from_event", "Channel named in the event (properties.channel)"),
    *Channel.choices,
]
# Which form fields each kind uses (the admin's JS shows only these).
KIND_FIELDS: dict[str, list[str]] = {
    Step.Kind.SEND: ["channel", "template", "fallback_channels"],
    Step.Kind.WAIT: ["duration", "until_time"],
    Step.Kind.WAIT_FOR_EVENT: ["event", "match", "timeout", "on_event", "on_timeout"],
    Step.Kind.BRANCH: ["rules", "default"],
    Step.Kind.SURVEY: [
        "channel",
        "template",
        "fallback_channels",
        "survey_kind",
        "choices",
        "reprompt_template",
        "timeout",
    ],
    Step.Kind.SPLIT: ["variants"],
    Step.Kind.EXIT: ["reason"],
}
_WEIGHT = re.compile(r"[0-9]{1,4}")
ALL_FIELDS = sorted({f for fields in KIND_FIELDS.values() for f in fields})
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(text: str) -> int | None:
    """Seconds from "3d", "12h", "1d 6h", "90m" or a plain number of seconds."""
    text = (text or "").strip().lower()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        raise forms.ValidationError("Write a duration like 3d, 12h, 1d 6h or 90m.")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


def format_duration(seconds: int | None) -> str:
    if not seconds:
        return ""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return " ".join(parts)


class VariantsWidget(forms.Widget):
    """A split's variants as rows of key / weight / go-to-step inputs (MAX_VARIANTS rows; the
    step form's JS shows the filled ones and an "Add a variant" button), so nobody writes
    JSON. Posts as `<name>_key_<i>`, `<name>_weight_<i>`, `<name>_goto_<i>`."""

    PARTS = ("key", "weight", "goto")

    def value_from_datadict(self, data, files, name: str) -> list[dict[str, str]]:
        return [
            {part: str(data.get(f"{name}_{part}_{i}", "")).strip() for part in self.PARTS}
            for i in range(MAX_VARIANTS)
        ]

    def value_omitted_from_data(self, data, files, name: str) -> bool:
        return not any(f"{name}_{part}_0" in data for part in self.PARTS)

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer=None) -> str:
        rows = list(value or []) if isinstance(value, list) else []
        rows += [{}] * (MAX_VARIANTS - len(rows))
        placeholders = {"key": ("a", "b", "c", "d", "e"), "weight": ("50",) * 2 + ("",) * 3}

        def cell(i: int, part: str, row: dict[str, Any]) -> str:
            size = {"key": 10, "weight": 4, "goto": 16}[part]
            hint = placeholders.get(part, ("",) * MAX_VARIANTS)[i] if part != "goto" else ""
            return format_html(
                '<td><input type="text" name="{}_{}_{}" value="{}" size="{}" placeholder="{}" '
                'class="split-variant-{}" aria-label="Variant {} {}"></td>',
                name,
                part,
                i,
                "" if row.get(part) is None else row.get(part),
                size,
                hint,
                part,
                i + 1,
                part,
            )

        body = format_html_join(
            "",
            '<tr class="split-variant-row">{}{}{}</tr>',
            (
                (cell(i, "key", r), cell(i, "weight", r), cell(i, "goto", r))
                for i, r in enumerate(rows)
            ),
        )
        return format_html(
            '<table class="split-variants" data-max="{}"><thead><tr><th>Variant</th>'
            "<th>Weight</th><th>Then go to step</th></tr></thead><tbody>{}</tbody></table>",
            MAX_VARIANTS,
            body,
        )


class VariantsField(forms.Field):
    widget = VariantsWidget

    def to_python(self, value: Any) -> list[dict[str, Any]]:
        """The filled rows, weights as integers where they are numbers (the step form's clean
        reports what is wrong, only for a split step)."""
        variants = []
        for row in value or []:
            if not isinstance(row, dict) or not any(row.values()):
                continue
            weight: Any = row.get("weight", "")
            # ASCII digits only, and few of them: "²" passes isdigit() but not int(), and
            # 5000 digits overflow it (anything else stays text for the step's clean to name)
            if isinstance(weight, str) and _WEIGHT.fullmatch(weight.strip()):
                weight = int(weight)
            variants.append(
                {"key": row.get("key", ""), "weight": weight, "goto": row.get("goto", "")}
            )
        return variants


class HoldoutPercentField(forms.IntegerField):
    """The journey's holdout share: 0–50, an empty box meaning none (0)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(required=False, min_value=0, max_value=50)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> int:
        cleaned = super().clean(value)
        return 0 if cleaned is None else cleaned


class StepForm(forms.ModelForm):
    channel = forms.ChoiceField(choices=CHANNEL_CHOICES, required=False)
    template = forms.SlugField(required=False, help_text="Template slug (one per channel).")
    fallback_channels = forms.MultipleChoiceField(
        choices=Channel.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tried in order when the first channel is skipped or fails.",
    )
    duration = forms.CharField(required=False, help_text="e.g. 3d, 12h, 1d 6h")
    until_time = forms.TimeField(required=False, help_text="…or until this local time (09:00).")
    event = forms.CharField(required=False, help_text="e.g. message.replied, order.completed")
    match = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text='JSON: only events whose properties match, e.g. {"cart_id": '
        '"trigger.cart_id"} (same as the trigger event) or {"status": "paid"} (fixed).',
    )
    timeout = forms.CharField(required=False, help_text="e.g. 2d (empty: wait forever)")
    on_event = forms.SlugField(required=False, help_text="Step key when the event arrives.")
    on_timeout = forms.SlugField(required=False, help_text="Step key on timeout.")
    rules = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='JSON: [{"when": [{"field": "steps.nps.score", "op": "gte", "value": 9}], '
        '"goto": "review"}]',
    )
    default = forms.SlugField(required=False, help_text="Step key when no rule matches.")
    survey_kind = forms.ChoiceField(
        choices=[("nps", "NPS 0–10"), ("choice", "Choice list")], required=False
    )
    choices = forms.CharField(required=False, help_text="Comma-separated, for a choice survey.")
    reprompt_template = forms.SlugField(required=False, help_text="Asked once if not understood.")
    variants = VariantsField(
        required=False,
        help_text="2 to 5 variants. A contact always takes the same variant; the weights "
        "share them out (50/50, or 90/10 to try something on a few). Go to a step key, or "
        "“end”.",
    )
    reason = forms.CharField(required=False, max_length=200)

    class Meta:
        model = Step
        fields = ["position", "key", "kind", "next_step"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.instance.config or {}
        initial = {
            "channel": config.get("channel", "preferred"),
            "template": config.get("template", ""),
            "fallback_channels": config.get("fallback_channels", []),
            "duration": format_duration(config.get("duration_seconds")),
            "until_time": config.get("until_time") or None,
            "event": config.get("event", ""),
            "match": json.dumps(config["match"]) if config.get("match") else "",
            "timeout": format_duration(config.get("timeout_seconds")),
            "on_event": config.get("on_event", ""),
            "on_timeout": config.get("on_timeout", ""),
            "rules": json.dumps(config["rules"], indent=1) if config.get("rules") else "",
            "default": config.get("default", ""),
            "survey_kind": config.get("kind", "nps"),
            "choices": ", ".join(config.get("choices", [])),
            "reprompt_template": config.get("reprompt_template", ""),
            "reason": config.get("reason", ""),
            "variants": config.get("variants") or [],
        }
        for name, value in initial.items():
            self.fields[name].initial = value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if not kind:
            return data
        config: dict[str, Any] = {}
        try:
            if kind in (Step.Kind.SEND, Step.Kind.SURVEY):
                config["channel"] = data.get("channel") or "preferred"
                config["template"] = data.get("template") or ""
                config["fallback_channels"] = list(data.get("fallback_channels") or [])
            if kind == Step.Kind.WAIT:
                if data.get("until_time"):
                    config["until_time"] = data["until_time"].strftime("%H:%M")
                else:
                    seconds = parse_duration(data.get("duration", ""))
                    if not seconds or seconds <= 0:
                        self.add_error("duration", "Wait a positive duration or until a time.")
                    config["duration_seconds"] = seconds or 0
            if kind == Step.Kind.WAIT_FOR_EVENT:
                if not data.get("event"):
                    self.add_error("event", "Which event?")
                config["event"] = data.get("event", "")
                for name in ("on_event", "on_timeout"):
                    if data.get(name):
                        config[name] = data[name]
                match = self._match(data.get("match", ""))
                if match:
                    config["match"] = match
            if kind in (Step.Kind.WAIT_FOR_EVENT, Step.Kind.SURVEY):
                timeout = parse_duration(data.get("timeout", ""))
                if timeout is not None:
                    if timeout <= 0:
                        self.add_error("timeout", "The timeout must be positive.")
                    config["timeout_seconds"] = timeout
            if kind == Step.Kind.SURVEY:
                config["kind"] = data.get("survey_kind") or "nps"
                if config["kind"] == "choice":
                    config["choices"] = [
                        c.strip() for c in (data.get("choices") or "").split(",") if c.strip()
                    ]
                if data.get("reprompt_template"):
                    config["reprompt_template"] = data["reprompt_template"]
            if kind == Step.Kind.BRANCH:
                config["rules"] = self._rules(data.get("rules", ""))
                if data.get("default"):
                    config["default"] = data["default"]
            if kind == Step.Kind.SPLIT:
                config["variants"] = data.get("variants") or []
                for problem in variants_problems(config["variants"]):
                    self.add_error("variants", problem)
            if kind == Step.Kind.EXIT and data.get("reason"):
                config["reason"] = data["reason"]
        except forms.ValidationError as exc:
            self.add_error("duration" if kind == Step.Kind.WAIT else "timeout", exc)
        self.instance.config = config
        return data

    def _match(self, raw: str) -> dict[str, Any] | None:
        if not raw.strip():
            return None
        try:
            match = json.loads(raw)
        except ValueError:
            self.add_error("match", "Not valid JSON.")
            return None
        problems = match_problems(match, "Match")
        for problem in problems:
            self.add_error("match", problem)
        return None if problems else match

    def _rules(self, raw: str) -> list[dict[str, Any]]:
        if not raw.strip():
            return []
        try:
            rules = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.add_error("rules", f"Not valid JSON: {exc.msg} (line {exc.lineno}).")
            return []
        try:
            validate_safe_json(rules)
        except forms.ValidationError as exc:
            self.add_error("rules", exc)
            return []
        if not isinstance(rules, list) or not all(
            isinstance(r, dict) and "goto" in r and isinstance(r.get("when", []), list)
            for r in rules
        ):
            self.add_error("rules", 'A list of {"when": [...], "goto": "step-key"} rules.')
            return []
        from .conditions import OPS

        for rule in rules:
            for condition in rule.get("when", []):
                if (
                    not isinstance(condition, dict)
                    or "field" not in condition
                    or (condition.get("op") not in OPS)
                ):
                    self.add_error("rules", f"Each condition needs a field and an op in {OPS}.")
                    return []
        return rules


def step_kind_fields_json() -> str:
    return json.dumps({k: v for k, v in KIND_FIELDS.items()})


class DryRunForm(forms.Form):
    contact = forms.IntegerField(help_text="Contact id (see Contacts).")
    properties = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='Sample event properties as JSON, e.g. {"order_id": "1001"}',
    )
    replies = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text='What the customer answers per step key, e.g. {"nps": "9"}; '
        "unanswered steps time out.",
    )

    def _json(self, name: str) -> dict[str, Any]:
        raw = self.cleaned_data.get(name) or ""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from exc
        validate_safe_json(value)
        if not isinstance(value, dict):
            raise forms.ValidationError("Write a JSON object.")
        return value

    def clean_properties(self) -> dict[str, Any]:
        return self._json("properties")

    def clean_replies(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._json("replies").items()}
