"""The built-in journeys' templates (journeys.blueprints installs them)."""

from __future__ import annotations

from typing import Any

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
    # Welcome offer (A/B test): two offers, each with a link to the shop (tracked at send time).
    {
        "slug": "welcome-offer-a",
        "channel": "email",
        "name": "Welcome offer A: 10% off (email)",
        "subject": "Welcome! 10% off your first order",
        "body": HELLO + ", welcome aboard. Here is 10% off your first order with the code "
        "WELCOME10: https://shop.example.com/welcome?code=WELCOME10",
    },
    {
        "slug": "welcome-offer-a",
        "channel": "sms",
        "name": "Welcome offer A: 10% off (SMS)",
        "body": HELLO + "! 10% off your first order with WELCOME10: "
        "https://shop.example.com/welcome?code=WELCOME10",
    },
    {
        "slug": "welcome-offer-b",
        "channel": "email",
        "name": "Welcome offer B: free shipping (email)",
        "subject": "Welcome! Free shipping on your first order",
        "body": HELLO + ", welcome aboard. Your first order ships free: "
        "https://shop.example.com/welcome?offer=free-shipping",
    },
    {
        "slug": "welcome-offer-b",
        "channel": "sms",
        "name": "Welcome offer B: free shipping (SMS)",
        "body": HELLO + "! Your first order ships free: "
        "https://shop.example.com/welcome?offer=free-shipping",
    },
]
