"""Broadcasts API: CRUD by slug (drafts only change), launch / pause / resume / cancel, the
dry run and the report. Scopes: broadcasts:read, broadcasts:write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audiences.models import Segment
from audit.services import audit_record, audit_snapshot
from messaging.api.common import Conflict, NewestFirstPagination, paginated
from messaging.conversion import conversion_input_fields
from messaging.models import Template, Topic
from messaging.serializers import StrictSerializer

from . import drafts, services
from .dryrun import broadcast_dry_run
from .errors import BroadcastError
from .experiment_report import experiment_report
from .models import Broadcast
from .permissions import TRANSACTIONAL_SCOPE, key_has_scope
from .reports import broadcast_activity, broadcast_report
from .services import experiments

READ, WRITE = "broadcasts:read", "broadcasts:write"

BROADCAST_EXAMPLE = OpenApiExample(
    "Black Friday, 10:00 in each customer's time zone",
    value={
        "name": "Black Friday",
        "slug": "black-friday",
        "segments": ["jakarta-repeat"],
        "exclude_segments": [],
        "template_slug": "black-friday",
        "channel_order": ["whatsapp", "sms", "email"],
        "category": "marketing",
        "send_mode": "local",
        "local_send_date": "2027-11-26",
        "local_send_time": "10:00",
        "throttle_per_minute": 600,
        "conversion_events": ["order.completed"],
        "conversion_window_hours": 72,
        "revenue_property": "total",
    },
    request_only=True,
)


# --- Serializers ------------------------------------------------------------------------


class VariantSpecOutput(serializers.Serializer):
    template_slug = serializers.CharField()
    weight = serializers.IntegerField()


class VariantInput(StrictSerializer):
    template_slug = serializers.SlugField(
        max_length=100, help_text="A template family (one template per channel)."
    )
    weight = serializers.IntegerField(
        min_value=1, max_value=experiments.MAX_WEIGHT, help_text="Its share, relative."
    )


class BroadcastOutput(serializers.ModelSerializer):
    segments = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    exclude_segments = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    template_channels = serializers.SerializerMethodField()
    channel_order = serializers.ListField(child=serializers.CharField())
    variants = serializers.ListField(child=VariantSpecOutput())
    topic = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Broadcast
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "status",
            "category",
            "topic",
            "segments",
            "exclude_segments",
            "template_slug",
            "template_channels",
            "channel_order",
            "variants",
            "holdout_percent",
            "variant_test_percent",
            "winner_after_hours",
            "winner_metric",
            "winner_due_at",
            "winner_variant",
            "winner_chosen_at",
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
            "recipient_count",
            "created_at",
            "updated_at",
            "launched_at",
            "paused_at",
            "cancelled_at",
            "completed_at",
        ]

    def get_template_channels(self, obj: Broadcast) -> list[str]:
        known = self.context.get("template_channels")  # a list page: read once for all
        if known is not None:
            return known.get(obj.template_slug, [])
        return drafts.template_channels(obj.template_slug)


def _fields(required: bool) -> dict[str, serializers.Field]:
    """The writable fields; on create the name, slug, segments and template are required."""
    opt = {"required": False}
    return {
        "name": serializers.CharField(max_length=200, required=required),
        "description": serializers.CharField(max_length=5000, allow_blank=True, **opt),
        "category": serializers.ChoiceField(choices=Broadcast.Category.choices, **opt),
        "topic": serializers.SlugRelatedField(
            slug_field="slug",
            queryset=Topic.objects.all(),
            allow_null=True,
            help_text="A subscription topic's slug: only contacts subscribed to it receive "
            "the broadcast (null: none).",
            **opt,
        ),
        "segments": serializers.ListField(
            child=serializers.SlugField(max_length=100),
            max_length=50,
            required=required,
            help_text="Slugs of the segments whose contacts receive it.",
        ),
        "exclude_segments": serializers.ListField(
            child=serializers.SlugField(max_length=100),
            max_length=50,
            help_text="Slugs of segments whose contacts never receive it.",
            **opt,
        ),
        "template_slug": serializers.SlugField(
            max_length=100, required=required, help_text="A template family (one per channel)."
        ),
        "channel_order": serializers.ListField(
            child=serializers.ChoiceField(choices=drafts.CHANNEL_CHOICES),
            min_length=1,
            max_length=4,
            help_text='Channels to try in order; "preferred" is the contact\'s own.',
            **opt,
        ),
        "variants": serializers.ListField(
            child=VariantInput(),
            max_length=experiments.MAX_VARIANTS,
            help_text="2–5 message variants, each a template family with a weight, assigned "
            "at launch (empty: template_slug alone).",
            **opt,
        ),
        "holdout_percent": serializers.IntegerField(
            min_value=0,
            max_value=experiments.MAX_HOLDOUT,
            help_text="A control group of this share is never sent anything.",
            **opt,
        ),
        "variant_test_percent": serializers.IntegerField(
            min_value=1,
            max_value=experiments.MAX_TEST_PERCENT,
            allow_null=True,
            help_text="Send the variants to this share first; the rest gets the winner.",
            **opt,
        ),
        "winner_after_hours": serializers.IntegerField(
            min_value=1, max_value=experiments.MAX_WINNER_HOURS, allow_null=True, **opt
        ),
        "winner_metric": serializers.ChoiceField(
            choices=Broadcast.WinnerMetric.choices, allow_blank=True, **opt
        ),
        "send_mode": serializers.ChoiceField(choices=Broadcast.SendMode.choices, **opt),
        "send_at": serializers.DateTimeField(allow_null=True, **opt),
        "local_send_date": serializers.DateField(allow_null=True, **opt),
        "local_send_time": serializers.TimeField(allow_null=True, **opt),
        "throttle_per_minute": serializers.IntegerField(
            min_value=1, max_value=drafts.MAX_THROTTLE, allow_null=True, **opt
        ),
        "end_at": serializers.DateTimeField(allow_null=True, **opt),
        "quiet_hours_start": serializers.TimeField(**opt),
        "quiet_hours_end": serializers.TimeField(**opt),
        "frequency_cap_action": serializers.ChoiceField(choices=Broadcast.CapAction.choices, **opt),
        **conversion_input_fields(),
    }


BroadcastCreateInput = type(
    "BroadcastCreateInput",
    (StrictSerializer,),
    {
        "__module__": __name__,
        "__doc__": "A new draft.",
        "slug": serializers.SlugField(max_length=100),
        **_fields(required=True),
    },
)
BroadcastUpdateInput = type(
    "BroadcastUpdateInput",
    (StrictSerializer,),
    {
        "__module__": __name__,
        "__doc__": "Any of the fields; the slug is fixed. Drafts only.",
        **_fields(required=False),
    },
)


class ActionInput(StrictSerializer):
    """No fields: the action is in the URL."""


class DryRunChannelOutput(serializers.Serializer):
    channel = serializers.CharField()
    reachable = serializers.IntegerField(help_text="Could take this channel (address, consent).")
    sent = serializers.IntegerField()
    held = serializers.IntegerField()
    held_reasons = serializers.DictField(child=serializers.IntegerField())
    skipped = serializers.IntegerField(help_text="Fell through to the next channel.")
    skipped_reasons = serializers.DictField(child=serializers.IntegerField())


class SplitOutput(serializers.Serializer):
    control = serializers.IntegerField(help_text="Held out: never sent.")
    awaiting_winner = serializers.IntegerField(help_text="Sent the winner later.")
    variants = serializers.DictField(child=serializers.IntegerField())


class DryRunOutput(serializers.Serializer):
    broadcast = serializers.CharField()
    evaluated_at = serializers.DateTimeField()
    audience = serializers.IntegerField()
    sent = serializers.IntegerField()
    held = serializers.IntegerField()
    skipped = serializers.IntegerField()
    skipped_reasons = serializers.DictField(child=serializers.IntegerField())
    channel_order = serializers.ListField(child=serializers.CharField())
    channels = DryRunChannelOutput(many=True)
    reasons = serializers.DictField(child=serializers.CharField())
    split = SplitOutput(allow_null=True, help_text="Experiments: how the audience is split.")


class _Counts(serializers.Serializer):
    recipients = serializers.IntegerField()
    sent = serializers.IntegerField(help_text="Accepted by the provider.")
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    unsubscribed = serializers.IntegerField()
    conversions = serializers.IntegerField()
    delivery_rate = serializers.FloatField(allow_null=True)
    conversion_rate = serializers.FloatField(allow_null=True)


class ReportChannelOutput(_Counts):
    channel = serializers.CharField(help_text='"none": skipped before any channel.')


class ActivityOutput(serializers.Serializer):
    hours = serializers.ListField(child=serializers.DateTimeField())
    series = serializers.DictField(child=serializers.ListField(child=serializers.IntegerField()))


class VariantRatesOutput(serializers.Serializer):
    sent = serializers.FloatField(allow_null=True)
    delivered = serializers.FloatField(allow_null=True)
    opened = serializers.FloatField(allow_null=True)
    clicked = serializers.FloatField(allow_null=True)
    replied = serializers.FloatField(allow_null=True)
    converted = serializers.FloatField(allow_null=True)


class VariantOutput(serializers.Serializer):
    variant = serializers.CharField()
    weight = serializers.IntegerField(allow_null=True)
    winner = serializers.BooleanField()
    recipients = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    converted = serializers.IntegerField()
    rates = VariantRatesOutput(help_text="Each metric per recipient of the variant.")


class HoldoutOutput(serializers.Serializer):
    treated = serializers.IntegerField()
    treated_converted = serializers.IntegerField()
    control = serializers.IntegerField()
    control_converted = serializers.IntegerField()
    treated_rate = serializers.FloatField(allow_null=True)
    control_rate = serializers.FloatField(allow_null=True)
    uplift_points = serializers.FloatField(allow_null=True)
    uplift_relative = serializers.FloatField(allow_null=True)
    ci_low_points = serializers.FloatField(allow_null=True)
    ci_high_points = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    test = serializers.CharField()
    significant = serializers.BooleanField()


class ExperimentOutput(serializers.Serializer):
    variants = VariantOutput(many=True)
    variant_keys = serializers.ListField(child=serializers.CharField())
    test_percent = serializers.IntegerField(allow_null=True)
    winner_after_hours = serializers.IntegerField(allow_null=True)
    winner_metric = serializers.CharField(allow_blank=True)
    winner_due_at = serializers.DateTimeField(allow_null=True)
    winner_variant = serializers.CharField(allow_blank=True)
    winner_chosen_at = serializers.DateTimeField(allow_null=True)
    awaiting_winner = serializers.IntegerField()
    holdout_percent = serializers.IntegerField()
    control = serializers.IntegerField()
    conversion_events = serializers.ListField(child=serializers.CharField())
    conversion_window_hours = serializers.IntegerField()
    holdout = HoldoutOutput(
        allow_null=True,
        help_text="Control vs treated conversion (intent-to-treat), uplift and significance.",
    )


class ReportOutput(serializers.Serializer):
    broadcast = serializers.CharField()
    status = serializers.CharField()
    conversion_events = serializers.ListField(child=serializers.CharField())
    conversion_window_hours = serializers.IntegerField()
    totals = _Counts()
    channels = ReportChannelOutput(many=True)
    states = serializers.DictField(child=serializers.IntegerField())
    reasons = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    activity = ActivityOutput()
    experiment = ExperimentOutput(allow_null=True)


# --- Helpers ------------------------------------------------------------------------------


def _get(slug: str) -> Broadcast:
    return get_object_or_404(Broadcast, slug=slug)


def _segments(data: dict[str, Any], name: str) -> list[Segment] | None:
    slugs = data.get(name)
    if slugs is None:
        return None
    found = {s.slug: s for s in Segment.objects.filter(slug__in=slugs)}
    unknown = [s for s in slugs if s not in found]
    if unknown:
        raise exceptions.ValidationError({name: [f"Unknown segment: {', '.join(unknown)}."]})
    return [found[s] for s in dict.fromkeys(slugs)]


def _plain(validated: dict[str, Any]) -> dict[str, Any]:
    """The validated input, nested serializers' ordered dicts as plain JSON values."""
    data = dict(validated)
    if "variants" in data:
        data["variants"] = [dict(v) for v in data["variants"]]
    return data


def _field_errors(exc: BroadcastError) -> exceptions.ValidationError:
    return exceptions.ValidationError(
        {name or "non_field_errors": msgs for name, msgs in exc.errors.items()}
    )


def _editable(broadcast: Broadcast) -> None:
    if broadcast.status != Broadcast.Status.DRAFT:
        raise Conflict(
            f"This broadcast is {broadcast.get_status_display().lower()}: only drafts change."
        )


# --- Views --------------------------------------------------------------------------------


class BroadcastListView(APIView):
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        responses=paginated(BroadcastOutput),
        parameters=[
            OpenApiParameter("status", str, enum=Broadcast.Status.values),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        summary="List broadcasts, newest first",
    )
    def get(self, request: Request) -> Response:
        qs = Broadcast.objects.select_related("topic").prefetch_related(
            "segments", "exclude_segments"
        )
        wanted = request.query_params.get("status", "")
        if wanted:
            if wanted not in Broadcast.Status.values:
                raise exceptions.ValidationError(
                    {"status": [f"Choose one of: {', '.join(Broadcast.Status.values)}."]}
                )
            qs = qs.filter(status=wanted)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        channels: dict[str, list[str]] = {}
        for slug, channel in Template.objects.filter(
            slug__in={b.template_slug for b in page}
        ).values_list("slug", "channel"):
            channels.setdefault(slug, []).append(channel)
        context = {"template_channels": {k: sorted(v) for k, v in channels.items()}}
        return paginator.get_paginated_response(
            BroadcastOutput(page, many=True, context=context).data
        )

    @extend_schema(
        request=BroadcastCreateInput,
        responses={201: BroadcastOutput},
        examples=[BROADCAST_EXAMPLE],
        summary="Create a draft broadcast",
    )
    def post(self, request: Request) -> Response:
        payload = BroadcastCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = _plain(payload.validated_data)
        segments = _segments(data, "segments") or []
        excluded = _segments(data, "exclude_segments") or []
        try:
            with transaction.atomic():
                broadcast = drafts.broadcast_create(
                    values=data, segments=segments, exclude_segments=excluded
                )
                audit_record(
                    actor=request.auth,
                    action="create",
                    target=broadcast,
                    after=audit_snapshot(broadcast),
                    request=request,
                )
        except BroadcastError as exc:
            raise _field_errors(exc) from None
        return Response(BroadcastOutput(broadcast).data, status=status.HTTP_201_CREATED)


class BroadcastDetailView(APIView):
    required_scopes = {"GET": READ, "PATCH": WRITE, "DELETE": WRITE}

    @extend_schema(responses=BroadcastOutput, summary="Read a broadcast")
    def get(self, request: Request, slug: str) -> Response:
        return Response(BroadcastOutput(_get(slug)).data)

    @extend_schema(
        request=BroadcastUpdateInput,
        responses={200: BroadcastOutput, 409: OpenApiResponse(description="Not a draft.")},
        summary="Change a draft broadcast",
        description="Refused with 409 once launched: what was frozen at launch is sent.",
    )
    def patch(self, request: Request, slug: str) -> Response:
        broadcast = _get(slug)
        payload = BroadcastUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        _editable(broadcast)
        data = _plain(payload.validated_data)
        before = audit_snapshot(broadcast)
        try:
            with transaction.atomic():
                broadcast = drafts.broadcast_update(
                    broadcast=broadcast,
                    values=data,
                    segments=_segments(data, "segments"),
                    exclude_segments=_segments(data, "exclude_segments"),
                )
                audit_record(
                    actor=request.auth,
                    action="change",
                    target=broadcast,
                    before=before,
                    after=audit_snapshot(broadcast),
                    request=request,
                )
        except BroadcastError as exc:
            if "" in exc.errors:  # launched meanwhile
                raise Conflict(exc.errors[""][0]) from None
            raise _field_errors(exc) from None
        return Response(BroadcastOutput(broadcast).data)

    @extend_schema(
        responses={204: None, 409: OpenApiResponse(description="Not a draft.")},
        summary="Delete a draft broadcast",
    )
    def delete(self, request: Request, slug: str) -> Response:
        broadcast = _get(slug)
        _editable(broadcast)
        before = audit_snapshot(broadcast)
        try:
            with transaction.atomic():
                audit_record(
                    actor=request.auth,
                    action="delete",
                    target=broadcast,
                    before=before,
                    request=request,
                )
                drafts.broadcast_delete(broadcast=broadcast)
        except BroadcastError as exc:
            raise Conflict(next(iter(exc.errors.values()))[0]) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


def _action_view(name: str, summary: str, description: str) -> type[APIView]:
    """POST …/{slug}/<name>/: calls campaigns.services.broadcast_<name>."""

    def post(self, request: Request, slug: str) -> Response:
        ActionInput(data=request.data or {}).is_valid(raise_exception=True)
        act: Callable[..., Any] = getattr(services, f"broadcast_{name}")
        broadcast = _get(slug)
        if name == "launch" and broadcast.status != Broadcast.Status.DRAFT:
            # Only a draft launches (a second freeze would add who joined the segments since).
            raise exceptions.ValidationError(
                {
                    "status": [
                        f"A {broadcast.get_status_display().lower()} broadcast cannot be "
                        "launched: only drafts are."
                    ]
                }
            )
        if (
            name == "launch"
            and broadcast.category == Broadcast.Category.TRANSACTIONAL
            and not key_has_scope(request.auth, TRANSACTIONAL_SCOPE)
        ):
            raise exceptions.PermissionDenied(
                f"This API key lacks the scope {TRANSACTIONAL_SCOPE!r}: a transactional "
                "broadcast skips the marketing consent rules, quiet hours and the frequency cap."
            )
        try:  # the service records the audit entry (the API key as actor)
            act(broadcast=broadcast, actor=request.auth, now=timezone.now())
        except BroadcastError as exc:
            raise _field_errors(exc) from None
        broadcast.refresh_from_db()
        return Response(BroadcastOutput(broadcast).data)

    post = extend_schema(
        request=ActionInput,
        responses=BroadcastOutput,
        summary=summary,
        description=description,
    )(post)
    return type(
        f"Broadcast{name.title()}View",
        (APIView,),
        {"__module__": __name__, "required_scopes": {"POST": WRITE}, "post": post},
    )


BroadcastLaunchView = _action_view(
    "launch",
    "Launch a draft broadcast",
    "Freezes the audience into recipients now and sends at the broadcast's send time.",
)
BroadcastPauseView = _action_view(
    "pause", "Pause a broadcast", "Recipients not yet sent wait until it is resumed."
)
BroadcastResumeView = _action_view("resume", "Resume a paused broadcast", "")
BroadcastCancelView = _action_view(
    "cancel", "Cancel a broadcast", "Recipients not yet sent are never sent. Final."
)


class BroadcastDryRunView(APIView):
    required_scopes = {"GET": READ}

    @extend_schema(
        responses=DryRunOutput,
        summary="What launching now would do",
        description="Per channel in the broadcast's order: sent, held and skipped, with "
        "reasons, for the audience as it is now. Nothing is written or sent.",
    )
    def get(self, request: Request, slug: str) -> Response:
        result = broadcast_dry_run(broadcast=_get(slug), now=timezone.now())
        return Response(DryRunOutput(result).data)


class BroadcastReportView(APIView):
    required_scopes = {"GET": READ}

    @extend_schema(
        responses=ReportOutput,
        summary="A broadcast's report",
        description="Per channel and in total: recipients, sent, delivered, failed, opened, "
        "clicked, replied, unsubscribed, conversions (the goal event within the window after "
        "the send); recipients per state; held/skipped reasons; activity per hour; and for "
        "an experiment, per variant and the holdout comparison (uplift, significance).",
    )
    def get(self, request: Request, slug: str) -> Response:
        broadcast = _get(slug)
        report = {
            **broadcast_report(broadcast=broadcast),
            "activity": broadcast_activity(broadcast=broadcast),
            "experiment": experiment_report(broadcast=broadcast),
        }
        return Response(ReportOutput(report).data)
