"""Staff-only pages and JSON endpoints under /admin/touchline/ (see staff_views.py)."""

from django.urls import path

from . import staff_views

urlpatterns = [
    path(
        "templates/preview/",
        staff_views.template_preview,
        name="touchline-template-preview",
    ),
    path(
        "templates/preview/contacts/",
        staff_views.template_preview_contacts,
        name="touchline-template-preview-contacts",
    ),
    path(
        "templates/<int:pk>/send-test/",
        staff_views.template_send_test,
        name="touchline-template-send-test",
    ),
]
