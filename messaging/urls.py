from django.urls import path

from . import api

urlpatterns = [
    path("messages/", api.MessageListCreateView.as_view(), name="api-messages"),
    path("messages/<uuid:message_id>/", api.MessageDetailView.as_view(), name="api-message"),
    path("contacts/", api.ContactListView.as_view(), name="api-contacts"),
    path("contacts/<str:external_id>/", api.ContactDetailView.as_view(), name="api-contact"),
    path(
        "contacts/<str:external_id>/consent/", api.ConsentView.as_view(), name="api-contact-consent"
    ),
    path(
        "contacts/<str:external_id>/topics/",
        api.ContactTopicsView.as_view(),
        name="api-contact-topics",
    ),
    path("topics/", api.TopicListView.as_view(), name="api-topics"),
    path(
        "contacts/<str:external_id>/export/",
        api.ContactExportView.as_view(),
        name="api-contact-export",
    ),
    path(
        "contacts/<str:external_id>/touchpoints/",
        api.ContactTouchpointsView.as_view(),
        name="api-contact-touchpoints",
    ),
    path("touchpoints/", api.TouchpointListView.as_view(), name="api-touchpoints"),
    path("templates/", api.TemplateListView.as_view(), name="api-templates"),
    path(
        "templates/render/", api.TemplateDraftRenderView.as_view(), name="api-template-draft-render"
    ),
    path(
        "templates/<slug:slug>/<slug:channel>/",
        api.TemplateDetailView.as_view(),
        name="api-template",
    ),
    path(
        "templates/<slug:slug>/<slug:channel>/render/",
        api.TemplateRenderView.as_view(),
        name="api-template-render",
    ),
]
