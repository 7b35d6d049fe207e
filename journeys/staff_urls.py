"""Staff-only pages and JSON endpoints under /admin/touchline/ (see staff_views.py)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
