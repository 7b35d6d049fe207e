"""Hooks journeys publishes after commit, for outbound webhooks and other listeners.

- `survey_answered(response_id, contact_id, journey_slug, step_key, status, score, choice,
  nps_category)`
- `enrollment_ended(enrollment_id, contact_id, journey_slug, state, reason)` (state is
  completed, converted, exited or failed)
"""

from django.dispatch import Signal

survey_answered = Signal()
enrollment_ended = Signal()
