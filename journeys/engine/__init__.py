"""Step execution: advance one enrollment until it waits or ends.

Each step kind has a handler that returns what happens next: go on (to a step key or the
following step), wait (until a time and/or an event), or end. Per-step working state lives in
`enrollment.context["step"]`, step outputs in `context["steps"][key]`, so a re-run after a
crash or a wake-up continues where it was. The row lock taken in `enrollment_advance` (one
enrollment) and `enrollments_advance` (a batch, what the scheduler runs) makes advancing the
same enrollment twice at once impossible.

A package of cohesive modules; every name is re-exported here, so callers keep writing
`from journeys import engine; engine.enrollment_advance(...)`:

- run: `Run` (one advance's working state), the handlers' results, deferred batch writes
- sending: the send step; `send_on_first_allowed_channel` (also surveys and fallbacks)
- steps: waits, branches, A/B splits, exits
- survey: the survey step
- loop: the step loop and `enrollment_advance`
- batch: `enrollments_advance`, `enrollments_claim_due`, `run_due`

The engine calls journeys.services and messaging.services; neither imports the engine.
journeys.tasks imports the engine and services; services only enqueue tasks, looked up when
called (tasks import services, never the reverse at import time).
"""

from .batch import (
    ADVANCE_BATCH,
    CONTACT_STEP_KINDS,
    enrollments_advance,
    enrollments_claim_due,
    run_due,
)
from .loop import (
    CONVERSATION_RESOLVED,
    END,
    HANDLERS,
    MAX_STEPS_PER_ADVANCE,
    PAUSED_RECHECK,
    enrollment_advance,
)
from .run import SAVED_FIELDS, Continue, Deferred, End, Run, Wait
from .sending import DEFAULT_CHANNEL_ORDER, send_on_first_allowed_channel
from .steps import branch_scope, next_local_time
from .survey import ENDING_FIELDS

__all__ = [
    "ADVANCE_BATCH",
    "CONTACT_STEP_KINDS",
    "CONVERSATION_RESOLVED",
    "DEFAULT_CHANNEL_ORDER",
    "END",
    "ENDING_FIELDS",
    "HANDLERS",
    "MAX_STEPS_PER_ADVANCE",
    "PAUSED_RECHECK",
    "SAVED_FIELDS",
    "Continue",
    "Deferred",
    "End",
    "Run",
    "Wait",
    "branch_scope",
    "enrollment_advance",
    "enrollments_advance",
    "enrollments_claim_due",
    "next_local_time",
    "run_due",
    "send_on_first_allowed_channel",
]
