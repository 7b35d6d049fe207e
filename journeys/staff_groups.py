"""The staff groups, kept in step with the models after every migrate (so an existing install
gets a new permission of its groups with its next `migrate`). README's role table says the same.

Kept out of every group, for superusers (or a group an administrator makes): deleting,
`messaging.manage_test_contacts` (who is a test recipient), API keys, outbound webhooks, users.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

GROUPS: dict[str, list[str]] = {
    # build and launch journeys and templates; read contacts and results
    "Marketing": [
        "journeys.add_journey",
        "journeys.change_journey",
        "journeys.view_journey",
        "journeys.add_step",
        "journeys.change_step",
        "journeys.delete_step",
        "journeys.view_step",
        "journeys.view_enrollment",
        "journeys.change_enrollment",
        "journeys.fast_forward_enrollment",
        "journeys.view_event",
        "journeys.view_surveyresponse",
        # template tests, only ever to test contacts (messaging/staff_sends.py)
        "messaging.send_test_message",
        "messaging.add_template",
        "messaging.change_template",
        "messaging.view_template",
        "messaging.view_contact",
        "messaging.view_message",
        "messaging.view_touchpoint",
        "messaging.view_consent",
        "messaging.view_consentchange",
        # subscription topics (the preference center) that journeys and broadcasts name
        "messaging.add_topic",
        "messaging.change_topic",
        "messaging.view_topic",
        "messaging.view_topicsubscription",
        # segments: build them, fill static ones from the contact list, recompute
        "audiences.add_segment",
        "audiences.change_segment",
        "audiences.view_segment",
        "audiences.view_segmentmembership",
        "audiences.view_segmentmembershipchange",
        # broadcasts: build, dry-run, test, launch / pause / resume / cancel, read reports
        "campaigns.add_broadcast",
        "campaigns.change_broadcast",
        "campaigns.view_broadcast",
        "campaigns.launch_broadcast",
        "campaigns.view_broadcastrecipient",
        # contact imports (upload, validate, run) and segment exports (personal data in bulk)
        "audiences.add_contactimport",
        "audiences.change_contactimport",
        "audiences.view_contactimport",
        "audiences.export_contacts",
        # reports (insights): funnels, links, drop-off, and their CSV downloads
        "insights.view_reports",
    ],
    # the inbox and contacts
    "Support": [
        "messaging.use_inbox",
        # inbox replies and "Send message" on a contact: the only group that writes to customers
        "messaging.send_message",
        "messaging.view_conversation",
        "messaging.change_conversation",
        "messaging.view_contact",
        "messaging.add_contact",
        "messaging.change_contact",
        "messaging.view_message",
        "messaging.view_touchpoint",
        "messaging.view_consent",
        "messaging.view_consentchange",
        "messaging.view_template",
        "messaging.view_topic",
        "messaging.view_topicsubscription",
        "journeys.view_enrollment",
        "journeys.change_enrollment",
        "journeys.view_journey",
        "journeys.view_surveyresponse",
        "audiences.view_segment",
        "audiences.view_segmentmembership",
        "audiences.view_segmentmembershipchange",
    ],
    # read-only everything staff can see
    "Viewer": [
        f"{app}.view_{model}"
        for app, models in {
            "messaging": [
                "contact",
                "template",
                "message",
                "touchpoint",
                "consent",
                "consentchange",
                "conversation",
                "topic",
                "topicsubscription",
            ],
            "journeys": ["journey", "step", "enrollment", "event", "surveyresponse"],
            "audiences": ["segment", "segmentmembership", "segmentmembershipchange"],
            "campaigns": ["broadcast", "broadcastrecipient"],
        }.items()
        for model in models
    ]
    + ["insights.view_reports"],
}


def ensure_staff_groups(**_: object) -> None:
    """Create or update the Marketing, Support and Viewer groups (idempotent)."""
    for name, codes in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for code in codes:
            app_label, codename = code.split(".")
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                wanted.append(permission)
        group.permissions.set(wanted)
