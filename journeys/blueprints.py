"""The four built-in journeys and their templates, installed idempotently."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from messaging.models import Template

from .models import Journey, Step

DAY = 86400
WA_SID = {  # placeholders for approved WhatsApp Content templates: replace with your own HX…
    "order-thanks": "HX" + "0" * 31 + "1",
    "nps-question": "HX" + "0" * 31 + "2",
    "review-request": "HX" + "0" * 31 + "3",
    "onboarding-tips": "HX" + "0" * 31 + "4",
    "onboarding-nudge": "HX" + "0" * 31 + "5",
    "cart-reminder": "HX" + "0" * 31 + "6",
    "cart-last-reminder": "HX" + "0" * 31 + "7",
}
HOUR = 3600
# The trigger event's properties are `event.*` in templates; a cart's `items` each have a name.
CART_ITEMS = (
    "{% for item in event.items %}{% unless forloop.first %}, {% endunless %}"
    "{{ item.name }}{% endfor %}"
)
CART_ITEMS_HTML = "<ul>{% for item in event.items %}<li>{{ item.name }}</li>{% endfor %}</ul>"
HELLO = "Hi {{ contact.first_name | default: 'there' }}"

TEMPLATES: list[dict[str, Any]] = [
    # Post-purchase
    {
        "slug": "order-thanks",
        "channel": "sms",
        "name": "Order thank-you (SMS)",
        "body": "Hi {{ contact.first_name | default: 'there' }}, thank you for your order"
        "{% if event.order_id %} #{{ event.order_id }}{% endif %}! We'll keep you posted.",
    },
    {
        "slug": "order-thanks",
        "channel": "whatsapp",
        "name": "Order thank-you (WhatsApp)",
        "body": "Hi {{ contact.first_name | default: 'there' }}, thank you for your order"
        "{% if event.order_id %} #{{ event.order_id }}{% endif %}! 🎉",
        "content_sid": WA_SID["order-thanks"],
        "content_variables": {
            "1": "{{ contact.first_name | default: 'there' }}",
            "2": "{{ event.order_id }}",
        },
    },
    {
        "slug": "order-thanks",
        "channel": "email",
        "name": "Order thank-you (email)",
        "subject": "Thank you for your order"
        "{% if event.order_id %} #{{ event.order_id }}{% endif %}",
        "html_body": "<p>Hi {{ contact.first_name | default: 'there' }},</p><p>Thank you for your "
        "order{% if event.order_id %} <b>#{{ event.order_id }}</b>{% endif %}. "
        "We'll let you know when it ships.</p>",
    },
    {
        "slug": "nps-question",
        "channel": "sms",
        "name": "NPS question (SMS)",
        "body": "How likely are you to recommend us to a friend? Reply with a number from 0 to 10.",
    },
    {
        "slug": "nps-question",
        "channel": "whatsapp",
        "name": "NPS question (WhatsApp)",
        "body": "How likely are you to recommend us to a friend? Reply with a number from 0 to 10.",
        "content_sid": WA_SID["nps-question"],
        "content_variables": {},
    },
    {
        "slug": "nps-question",
        "channel": "email",
        "name": "NPS question (email)",
        "subject": "One quick question",
        "body": "Hi {{ contact.first_name | default: 'there' }},\n\nHow likely are you to "
        "recommend us to a friend? Just reply to this email with a number from 0 to 10.",
    },
    {
        "slug": "nps-reask",
        "channel": "sms",
        "name": "NPS re-ask (SMS)",
        "body": "Sorry, we didn't catch that. Please reply with just a number from 0 to 10.",
    },
    {
        "slug": "nps-reask",
        "channel": "whatsapp",
        "name": "NPS re-ask (WhatsApp)",
        "body": "Sorry, we didn't catch that. Please reply with just a number from 0 to 10.",
    },
    {
        "slug": "nps-reask",
        "channel": "email",
        "name": "NPS re-ask (email)",
        "subject": "Sorry, we didn't catch that",
        "body": "Please reply with just a number from 0 (not likely) to 10 (very likely).",
    },
    {
        "slug": "review-request",
        "channel": "sms",
        "name": "Review request (SMS)",
        "body": "Thank you for the kind score! Would you leave us a review? "
        "https://example.com/review",
    },
    {
        "slug": "review-request",
        "channel": "whatsapp",
        "name": "Review request (WhatsApp)",
        "body": "Thanks! Would you leave us a review? https://example.com/review",
        "content_sid": WA_SID["review-request"],
        "content_variables": {},
    },
    {
        "slug": "review-request",
        "channel": "email",
        "name": "Review request (email)",
        "subject": "Would you leave us a review?",
        "body": "Thank you for the kind score! A short review helps a lot: https://example.com/review",
    },
    {
        "slug": "sorry-email",
        "channel": "email",
        "name": "Apology to a detractor (email)",
        "subject": "We're sorry",
        "body": "Hi {{ contact.first_name | default: 'there' }},\n\nWe're sorry your experience "
        "wasn't better. Someone from our team will reach out; you can also simply reply.",
    },
    # Onboarding
    {
        "slug": "onboarding-welcome",
        "channel": "email",
        "name": "Welcome (email)",
        "subject": "Welcome{% if contact.first_name %}, {{ contact.first_name }}{% endif %}!",
        "html_body": "<p>Welcome aboard!</p><p>Here is how to get started: "
        '<a href="https://example.com/start">your first steps</a>.</p>',
    },
    {
        "slug": "onboarding-tips",
        "channel": "sms",
        "name": "Tips (SMS)",
        "body": "Tip: set up your profile to get the most out of your account. "
        "https://example.com/tips",
    },
    {
        "slug": "onboarding-tips",
        "channel": "whatsapp",
        "name": "Tips (WhatsApp)",
        "body": "Tip: set up your profile to get the most out of your account.",
        "content_sid": WA_SID["onboarding-tips"],
        "content_variables": {},
    },
    {
        "slug": "onboarding-tips",
        "channel": "email",
        "name": "Tips (email)",
        "subject": "A tip to get started",
        "body": "Set up your profile: https://example.com/tips",
    },
    {
        "slug": "onboarding-nudge",
        "channel": "sms",
        "name": "Last nudge (SMS)",
        "body": "Still there? Finish setting up in two minutes: https://example.com/start",
    },
    {
        "slug": "onboarding-nudge",
        "channel": "whatsapp",
        "name": "Last nudge (WhatsApp)",
        "body": "Still there? Finish setting up in two minutes.",
        "content_sid": WA_SID["onboarding-nudge"],
        "content_variables": {},
    },
    {
        "slug": "onboarding-nudge",
        "channel": "email",
        "name": "Last nudge (email)",
        "subject": "Finish setting up",
        "body": "It takes two minutes: https://example.com/start",
    },
    # Abandoned cart (the trigger is cart.updated: event.cart_id, event.items)
    {
        "slug": "cart-reminder",
        "channel": "sms",
        "name": "Cart reminder (SMS)",
        "body": HELLO + ", you left " + CART_ITEMS + " in your cart. "
        "Finish your order: https://example.com/cart",
    },
    {
        "slug": "cart-reminder",
        "channel": "whatsapp",
        "name": "Cart reminder (WhatsApp)",
        "body": HELLO + ", you left " + CART_ITEMS + " in your cart. "
        "Finish your order: https://example.com/cart",
        "content_sid": WA_SID["cart-reminder"],
        "content_variables": {
            "1": "{{ contact.first_name | default: 'there' }}",
            "2": CART_ITEMS,
        },
    },
    {
        "slug": "cart-reminder",
        "channel": "email",
        "name": "Cart reminder (email)",
        "subject": "You left something in your cart",
        "html_body": "<p>"
        + HELLO
        + ",</p><p>You left these in your cart:</p>"
        + CART_ITEMS_HTML
        + '<p><a href="https://example.com/cart">Finish your order</a></p>',
    },
    {
        "slug": "cart-last-reminder",
        "channel": "sms",
        "name": "Cart last reminder (SMS)",
        "body": "Last chance, {{ contact.first_name | default: 'there' }}: "
        + CART_ITEMS
        + " are still in your cart. https://example.com/cart",
    },
    {
        "slug": "cart-last-reminder",
        "channel": "whatsapp",
        "name": "Cart last reminder (WhatsApp)",
        "body": "Last chance, {{ contact.first_name | default: 'there' }}: "
        + CART_ITEMS
        + " are still in your cart. https://example.com/cart",
        "content_sid": WA_SID["cart-last-reminder"],
        "content_variables": {
            "1": "{{ contact.first_name | default: 'there' }}",
            "2": CART_ITEMS,
        },
    },
    {
        "slug": "cart-last-reminder",
        "channel": "email",
        "name": "Cart last reminder (email)",
        "subject": "Your cart is waiting",
        "html_body": "<p>"
        + HELLO
        + ",</p><p>Last chance: these are still in your cart:</p>"
        + CART_ITEMS_HTML
        + '<p><a href="https://example.com/cart">Finish your order</a></p>',
    },
]

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
