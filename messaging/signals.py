"""Hooks messaging publishes once a change is committed, for apps above it (journeys,
outbound webhooks) to react without messaging importing them (one exception below).

- `message_status_changed(message_id, contact_id, channel, status, previous_status, kind)`
- `message_received(message_id, contact_id, channel, in_reply_to_id, keyword)`
- `consent_changed(contact_id, channel, status, previous_status, source)`
- `conversation_changed(contact_id, status)` (a staff member opened or resolved it)
- `contacts_changed(contact_ids)`: contacts were created or their fields, attributes or
  address flags changed (audiences marks them for their dynamic segments). Sent INSIDE the
  changing transaction, so a listener's cheap write commits or rolls back with the change;
  a listener must not do slow work or call out.
"""

from django.dispatch import Signal

message_status_changed = Signal()
message_received = Signal()
consent_changed = Signal()
conversation_changed = Signal()
contacts_changed = Signal()
