"""`python manage.py fast_forward [--contact EXTERNAL_ID] [--journey SLUG]`: demo time travel.

Ends the current wait of matching waiting enrollments now, so a demo need not wait three
days for the NPS question.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from journeys.models import Enrollment
from journeys.services import enrollments_fast_forward


class Command(BaseCommand):
    help = "End the current wait of waiting enrollments (demo and development)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--contact", help="external_id of the contact")
        parser.add_argument("--journey", help="journey slug")

    def handle(self, *args, contact: str | None, journey: str | None, **options) -> None:
        queryset = Enrollment.objects.all()
        if contact:
            queryset = queryset.filter(contact__external_id=contact)
        if journey:
            queryset = queryset.filter(journey__slug=journey)
        count = enrollments_fast_forward(queryset=queryset)
        self.stdout.write(f"Fast-forwarded {count} waiting enrollment(s).")
