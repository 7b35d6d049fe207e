"""The messaging REST API (contacts, messages, touchpoints) and the pieces other apps reuse."""

from .common import Conflict, idempotency_key_from, resolve_contact
from .contacts import (
    ConsentView,
    ContactDetailView,
    ContactExportView,
    ContactListView,
)
from .messages import MessageDetailView, MessageListCreateView, MessageOutput
from .touchpoints import ContactTouchpointsView, TouchpointListView

__all__ = [
    "Conflict",
    "ConsentView",
    "ContactDetailView",
    "ContactExportView",
    "ContactListView",
    "ContactTouchpointsView",
    "MessageDetailView",
    "MessageListCreateView",
    "MessageOutput",
    "TouchpointListView",
    "idempotency_key_from",
    "resolve_contact",
]
