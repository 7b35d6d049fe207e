"""Staff pages under /admin/touchline/ for reports (see views.py)."""

from django.urls import path

from . import views

urlpatterns = [
    path("reports/<slug:report>/", views.reports_page, name="touchline-reports"),
    path("reports/<slug:report>/csv/", views.reports_csv, name="touchline-reports-csv"),
]
