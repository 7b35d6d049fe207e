"""Subscription topics: the list (staff define them in the admin), and a contact's topic
subscriptions, read and changed like its channel consent (same scopes, same ledger)."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..models import ConsentSource, ConsentStatus, Contact, Topic
from ..serializers import StrictSerializer


class TopicOutput(serializers.ModelSerializer):
    class Meta:
        model = Topic
        fields = ["slug", "name", "description", "default_subscribed", "is_active", "position"]


class TopicListView(APIView):
    required_scopes = {"GET": "contacts:read"}

    @extend_schema(
        responses=TopicOutput(many=True),
        summary="Subscription topics (opt-out when default_subscribed, else opt-in)",
    )
    def get(self, request: Request) -> Response:
        return Response(TopicOutput(Topic.objects.order_by("position", "name"), many=True).data)


class TopicSubscriptionState(serializers.Serializer):
    topic = serializers.SlugField()
    status = serializers.ChoiceField(
        choices=ConsentStatus.choices, help_text="The contact's explicit choice, or unknown."
    )
    receives = serializers.BooleanField(
        help_text="Whether sends naming the topic reach the contact (the topic's default "
        "applies while the status is unknown)."
    )


class TopicSubscriptionInput(StrictSerializer):
    topic = serializers.SlugField(max_length=100)
    status = serializers.ChoiceField(
        choices=[ConsentStatus.SUBSCRIBED.value, ConsentStatus.UNSUBSCRIBED.value]
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def validate_topic(self, value: str) -> Topic:
        topic = Topic.objects.filter(slug=value).first()
        if topic is None:
            raise serializers.ValidationError(f"There is no topic {value!r}.")
        return topic


def _state(contact: Contact) -> dict:
    chosen = services.topic_subscriptions(contact=contact)
    return {
        "topics": [
            {
                "topic": t.slug,
                "status": chosen.get(t.slug, ConsentStatus.UNKNOWN),
                "receives": services.topic_effective(
                    topic=t, status=chosen.get(t.slug, ConsentStatus.UNKNOWN)
                ),
            }
            for t in Topic.objects.order_by("position", "name")
        ]
    }


STATE = inline_serializer("ContactTopics", {"topics": TopicSubscriptionState(many=True)})


class ContactTopicsView(APIView):
    required_scopes = {"GET": "contacts:read", "POST": "contacts:write"}

    @extend_schema(responses=STATE, summary="A contact's subscription to every topic")
    def get(self, request: Request, external_id: str) -> Response:
        contact = get_object_or_404(Contact, external_id=external_id)
        return Response(_state(contact))

    @extend_schema(
        request=TopicSubscriptionInput,
        responses=STATE,
        examples=[
            OpenApiExample(
                "Unsubscribe from the newsletter",
                request_only=True,
                value={"topic": "newsletter", "status": "unsubscribed"},
            )
        ],
        summary="Subscribe or unsubscribe a contact from a topic (ledger source api)",
    )
    def post(self, request: Request, external_id: str) -> Response:
        contact = get_object_or_404(Contact, external_id=external_id)
        payload = TopicSubscriptionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        if contact.erased_at is not None:
            raise serializers.ValidationError(
                {"contact": ["This contact was erased: its choices can no longer change."]}
            )
        with transaction.atomic():
            services.topic_subscription_set(
                contact=contact,
                topic=payload.validated_data["topic"],
                status=payload.validated_data["status"],
                source=ConsentSource.API,
                note=payload.validated_data.get("note", ""),
            )
        return Response(_state(contact))
