"""Writes of customer-side state. Services are the only writers of business state.

A package of cohesive modules; every name is re-exported here, so callers keep writing
`from messaging import services; services.message_create(...)`. A test that replaces a
function must patch the module that calls it (e.g. `messages.enqueue_delivery` for
`message_create`), not this package: the modules import each other's names directly.

- touchpoints: the contact's timeline
- contacts: create and update contacts, flag a dead address
- consent: consent per channel, with its history
- topics: subscriptions to staff-defined topics, with their history in the same ledger
- transitions: the one place a message's status changes
- messages: create outbound messages (idempotently) and enqueue their delivery
- delivery: send a queued message to the provider; the sweeper
- templates: create, change and delete templates (the API; the admin has its own forms)

Tasks import services, never the reverse: `enqueue_delivery` looks its task up when called.
"""

from .consent import consent_set
from .contacts import CONTACT_FIELDS, contact_update, contact_upsert, mark_address_bad
from .delivery import (
    DeliveryOutcome,
    _outbound,
    message_deliver,
    messages_sweep,
    provider_call_seconds,
    retry_delay,
)
from .messages import (
    IdempotencyConflict,
    MessageRequestError,
    enqueue_delivery,
    idempotent_replay,
    message_create,
    request_fingerprint,
)
from .templates import (
    TemplateExists,
    TemplateInUse,
    TemplateInvalid,
    template_create,
    template_delete,
    template_update,
    template_validate,
)
from .topics import topic_effective, topic_subscription_set, topic_subscriptions
from .touchpoints import touchpoint_record, touchpoints_write
from .transitions import message_transition

__all__ = [
    "CONTACT_FIELDS",
    "DeliveryOutcome",
    "IdempotencyConflict",
    "MessageRequestError",
    "TemplateExists",
    "TemplateInUse",
    "TemplateInvalid",
    "_outbound",
    "consent_set",
    "contact_update",
    "contact_upsert",
    "enqueue_delivery",
    "idempotent_replay",
    "mark_address_bad",
    "message_create",
    "message_deliver",
    "message_transition",
    "messages_sweep",
    "provider_call_seconds",
    "request_fingerprint",
    "retry_delay",
    "template_create",
    "template_delete",
    "template_update",
    "template_validate",
    "topic_effective",
    "topic_subscription_set",
    "topic_subscriptions",
    "touchpoint_record",
    "touchpoints_write",
]
