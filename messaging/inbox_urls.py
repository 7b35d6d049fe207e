from django.contrib.admin.views.decorators import staff_member_required
from django.urls import path

from . import inbox_views

urlpatterns = [
    path("inbox/", staff_member_required(inbox_views.inbox), name="touchline-inbox"),
    path(
        "inbox/<int:contact_id>/",
        staff_member_required(inbox_views.conversation),
        name="touchline-conversation",
    ),
    path(
        "inbox/<int:contact_id>/resolve/",
        staff_member_required(inbox_views.resolve),
        name="touchline-resolve",
    ),
    path(
        "contacts/<int:contact_id>/timeline/",
        staff_member_required(inbox_views.contact_timeline),
        name="touchline-timeline",
    ),
]
