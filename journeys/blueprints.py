"""The five built-in journeys and their templates (blueprint_templates), installed idempotently."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from messaging.models import Template

from .blueprint_templates import DAY, HOUR, TEMPLATES
from .models import Journey, Step

JOURNEYS: list[dict[str, Any]] = [
    {
        "slug": "post-purchase",
        "name": "Post-purchase thank-you",
        "description": "Thank the customer, ask for an NPS score three days later, then ask "
        "promoters for a review and apologise to detractors.",
        "trigger_event": "order.completed",
        "entry_policy": Journey.EntryPolicy.EVERY_TIME,
        "category": Journey.Category.TRANSACTIONAL,
        # A repeat order within three days of a message is credited to it (insights).
        "conversion_events": ["order.completed"],
        "revenue_property": "total",
        "steps": [
            {
                "key": "thank-you",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "order-thanks",
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
            {"key": "wait-3-days", "kind": "wait", "config": {"duration_seconds": 3 * DAY}},
            {
                "key": "nps",
                "kind": "survey",
                "config": {
                    "kind": "nps",
                    "channel": "preferred",
                    "template": "nps-question",
                    "reprompt_template": "nps-reask",
                    "timeout_seconds": 2 * DAY,
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
            {
                "key": "route",
                "kind": "branch",
                "config": {
                    "rules": [
                        {
                            "when": [{"field": "steps.nps.score", "op": "gte", "value": 9}],
                            "goto": "review",
                        },
                        {
                            "when": [{"field": "steps.nps.score", "op": "lte", "value": 6}],
                            "goto": "apology",
                        },
                    ],
                    "default": "end",
                },
            },
            {
                "key": "review",
                "kind": "send",
                "next_step": "end",
                "config": {
                    "channel": "preferred",
                    "template": "review-request",
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
            # The survey step also publishes `survey.detractor` for the team to act on.
            {
                "key": "apology",
                "kind": "send",
                "config": {"channel": "email", "template": "sorry-email", "fallback_channels": []},
            },
        ],
    },
    {
        "slug": "onboarding",
        "name": "Onboarding",
        "description": "Welcome email, a tip a day later, a last nudge three days after; ends "
        "as converted when onboarding.completed arrives.",
        "trigger_event": "user.signed_up",
        "goal_event": "onboarding.completed",
        "conversion_events": ["onboarding.completed"],
        "entry_policy": Journey.EntryPolicy.ONCE,
        "category": Journey.Category.MARKETING,
        "steps": [
            {
                "key": "welcome",
                "kind": "send",
                "config": {
                    "channel": "email",
                    "template": "onboarding-welcome",
                    "fallback_channels": [],
                },
            },
            {"key": "wait-1-day", "kind": "wait", "config": {"duration_seconds": DAY}},
            {
                "key": "tips",
                "kind": "send",
                "config": {
                    "channel": "sms",
                    "template": "onboarding-tips",
                    "fallback_channels": ["whatsapp", "email"],
                },
            },
            {"key": "wait-3-days", "kind": "wait", "config": {"duration_seconds": 3 * DAY}},
            {
                "key": "nudge",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "onboarding-nudge",
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
        ],
    },
    {
        "slug": "survey",
        "name": "NPS survey",
        "description": "A standalone NPS question on the channel named in the event "
        "(properties.channel), or the contact's preferred one.",
        "trigger_event": "survey.requested",
        "entry_policy": Journey.EntryPolicy.ONCE_AT_A_TIME,
        "category": Journey.Category.TRANSACTIONAL,
        "steps": [
            {
                "key": "nps",
                "kind": "survey",
                "config": {
                    "kind": "nps",
                    "channel": "from_event",
                    "template": "nps-question",
                    "reprompt_template": "nps-reask",
                    "timeout_seconds": 3 * DAY,
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
        ],
    },
    {
        "slug": "abandoned-cart",
        "name": "Abandoned cart",
        "description": "A cart not ordered within an hour gets a reminder listing its items, "
        "a last one a day later; an order.completed for the same cart_id ends it as converted, "
        "a cart.emptied for it as exited. One running enrollment per contact and cart.",
        "trigger_event": "cart.updated",
        "entry_policy": Journey.EntryPolicy.ONCE_AT_A_TIME,
        "entry_key": "cart_id",
        "goal_event": "order.completed",
        "goal_match": {"cart_id": "trigger.cart_id"},
        "conversion_events": ["order.completed"],
        "revenue_property": "total",
        "exit_event": "cart.emptied",
        "exit_match": {"cart_id": "trigger.cart_id"},
        "category": Journey.Category.MARKETING,
        "steps": [
            {
                "key": "wait-for-order",
                "kind": "wait_for_event",
                "config": {
                    "event": "order.completed",
                    "match": {"cart_id": "trigger.cart_id"},
                    "timeout_seconds": HOUR,
                    "on_event": "end",
                },
            },
            {
                "key": "reminder",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "cart-reminder",
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
            {
                "key": "wait-for-order-again",
                "kind": "wait_for_event",
                "config": {
                    "event": "order.completed",
                    "match": {"cart_id": "trigger.cart_id"},
                    "timeout_seconds": 23 * HOUR,
                    "on_event": "end",
                },
            },
            {
                "key": "last-reminder",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "cart-last-reminder",
                    "fallback_channels": ["sms", "whatsapp", "email"],
                },
            },
        ],
    },
    {
        "slug": "welcome-offer",
        "name": "Welcome offer (A/B test)",
        "description": "A new newsletter subscriber gets one of two offers (10% off, or free "
        "shipping), half each; 10% get nothing, as a control group. Orders within 7 days "
        "count as conversions, with their total as revenue: the Experiment page says which "
        "offer sells more and whether sending one at all does.",
        "trigger_event": "newsletter.subscribed",
        "entry_policy": Journey.EntryPolicy.ONCE,
        "category": Journey.Category.MARKETING,
        "holdout_percent": 10,
        "conversion_events": ["order.completed"],
        "conversion_window_hours": 7 * 24,
        "revenue_property": "total",
        "steps": [
            {
                "key": "offer-split",
                "kind": "split",
                "config": {
                    "variants": [
                        {"key": "a", "weight": 50, "goto": "offer-discount"},
                        {"key": "b", "weight": 50, "goto": "offer-shipping"},
                    ]
                },
            },
            {
                "key": "offer-discount",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "welcome-offer-a",
                    "fallback_channels": ["email", "sms"],
                },
                "next_step": "end",
            },
            {
                "key": "offer-shipping",
                "kind": "send",
                "config": {
                    "channel": "preferred",
                    "template": "welcome-offer-b",
                    "fallback_channels": ["email", "sms"],
                },
                "next_step": "end",
            },
        ],
    },
]


@transaction.atomic
def install_blueprints(*, activate: bool = False) -> list[str]:
    """Create the blueprint templates and journeys that do not exist yet (never overwrites a
    staff member's edits); with `activate`, set the blueprint journeys active."""
    report = []
    for spec in TEMPLATES:
        fields = {k: v for k, v in spec.items() if k not in ("slug", "channel")}
        _, created = Template.objects.get_or_create(
            slug=spec["slug"], channel=spec["channel"], defaults=fields
        )
        if created:
            report.append(f"template {spec['slug']} ({spec['channel']})")
    for spec in JOURNEYS:
        fields = {k: v for k, v in spec.items() if k not in ("slug", "steps")}
        journey, created = Journey.objects.get_or_create(slug=spec["slug"], defaults=fields)
        if created:
            for position, step in enumerate(spec["steps"]):
                Step.objects.create(journey=journey, position=position, **step)
            report.append(f"journey {journey.slug}")
        if activate and journey.status != Journey.Status.ACTIVE:
            journey.status = Journey.Status.ACTIVE
            journey.save(update_fields=["status", "updated_at"])
            report.append(f"activated {journey.slug}")
    return report
