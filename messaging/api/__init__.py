"""The messaging REST API (contacts, messages, templates, touchpoints) and shared pieces."""

from .common import Conflict, idempotency_key_from, resolve_contact
from .contacts import (
    ConsentView,
    ContactDetailView,
    ContactExportView,
    ContactListView,
)
from .messages import MessageDetailView, MessageListCreateView, MessageOutput
from .templates import (
    TemplateDetailView,
    TemplateDraftRenderView,
    TemplateListView,
    TemplateRenderView,
)
from .topics import ContactTopicsView, TopicListView
from .touchpoints import ContactTouchpointsView, TouchpointListView

__all__ = [
    "Conflict",
    "ConsentView",
    "ContactDetailView",
    "ContactExportView",
    "ContactListView",
    "ContactTopicsView",
    "ContactTouchpointsView",
    "MessageDetailView",
    "MessageListCreateView",
    "MessageOutput",
    "TemplateDetailView",
    "TemplateDraftRenderView",
    "TemplateListView",
    "TemplateRenderView",
    "TopicListView",
    "TouchpointListView",
    "idempotency_key_from",
    "resolve_contact",
]
