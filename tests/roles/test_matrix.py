"""The role matrix (issue 12): every admin action and every staff URL, run as each role.

The actions and URLs are read from the admin site and the URL configuration, not listed by
hand: an action or staff page added later without a row in ACTIONS / STAFF_URLS fails here.
For each role the test asserts allowed or refused; a refusal must leave every table as it
was and the provider simulator empty, and a refused action must not even be offered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from audiences.models import SegmentMembership, SegmentMembershipChange
from audit.models import AuditEntry
from audit.services import audit_record
from campaigns.models import Broadcast, BroadcastRecipient
from journeys.models import Enrollment, Journey
from journeys.staff_groups import GROUPS, ensure_staff_groups
from messaging.models import Consent, ConsentChange, Contact, Conversation, Message, Topic
from tests.factories import TemplateFactory

from .world import ALL, NOBODY, ROLES, SUPERUSER, World, assert_untouched, fresh, login, snapshot


def _broadcast(w: World, status: str = "draft") -> Broadcast:
    """A broadcast to the SMS-reachable segment, in `status` (made inside the role's
    savepoint, before the snapshot), with an SMS and an email template."""
    for channel in ("sms", "email"):
        if not TemplateFactory._meta.model.objects.filter(slug="matrix", channel=channel):
            TemplateFactory(slug="matrix", channel=channel, subject="Hi", body="Sale!")
    b, created = Broadcast.objects.get_or_create(
        slug=f"matrix-{status}",
        defaults={"name": f"Matrix {status}", "template_slug": "matrix", "status": status},
    )
    if created:
        b.segments.set([w.objects["segment"]])
    return b


def _broadcast_status(status: str) -> Callable[[World], str]:
    return lambda w: Broadcast.objects.get(slug=f"matrix-{status}").status


SELECT: dict[str, Callable[[World], Any]] = {
    "auth.group": lambda w: w.group,
    "auth.user": lambda w: w.victim,
    "messaging.template": lambda w: w.template,
    "messaging.message": lambda w: w.message,
    "messaging.touchpoint": lambda w: w.message.touchpoints.first(),
    "messaging.apikey": lambda w: w.api_key,
    # Subscription topics: Marketing adds and changes them; deleting is for superusers.
    "messaging.topic": lambda w: Topic.objects.get_or_create(
        slug="matrix-topic", defaults={"name": "Matrix topic"}
    )[0],
    # (a contact with messages cannot be deleted by anyone: messages are a log)
    "messaging.contact": lambda w: w.test_contact,
    "journeys.journey": lambda w: w.draft_journey,
    "journeys.enrollment": lambda w: w.enrollment,
    "journeys.surveyresponse": lambda w: w.survey_response,
    "journeys.event": lambda w: w.event,
    "audiences.segment": lambda w: w.objects["segment"],
    # Membership and its history are kept by the services only.
    "audiences.segmentmembership": lambda w: SegmentMembership.objects.create(
        segment=w.objects["static_segment"], contact=w.customer, entered_at=timezone.now()
    ),
    "audiences.segmentmembershipchange": lambda w: SegmentMembershipChange.objects.create(
        segment=w.objects["static_segment"], contact=w.customer, change="entered", at=timezone.now()
    ),
    "audiences.contactimport": lambda w: w.objects["contact_import"],
    "campaigns.broadcast": _broadcast,
    # Recipients are written by the sending engine only.
    "campaigns.broadcastrecipient": lambda w: BroadcastRecipient.objects.create(
        broadcast=_broadcast(w, "sending"),
        contact=w.customer,
        send_after=timezone.now(),
        updated_at=timezone.now(),
    ),
    "outbound.webhooksubscription": lambda w: w.subscription,
    "outbound.webhookdelivery": lambda w: w.delivery,
    # The two ledgers: nobody deletes from them, superusers included.
    "audit.auditentry": lambda w: audit_record(actor="matrix", action="seed", target=w.template),
    "messaging.consentchange": lambda w: ConsentChange.objects.create(
        contact=w.customer,
        channel="email",
        status="unsubscribed",
        previous_status="subscribed",
        source="api",
        changed_at=timezone.now(),
    ),
}

LEDGERS = (
    "messaging.message",
    "messaging.touchpoint",
    "audit.auditentry",
    "messaging.consentchange",
    "audiences.segmentmembership",
    "audiences.segmentmembershipchange",
    "campaigns.broadcastrecipient",
)


def _gone(pick: Callable[[World], Any]) -> Callable[[World], bool]:
    def check(w: World) -> bool:
        obj = pick(w)
        return not type(obj).objects.filter(pk=obj.pk).exists()

    return check


@dataclass(frozen=True)
class ActionRow:
    allowed: frozenset[str]
    select: Callable[[World], Any] | None = None  # default: SELECT[model]
    data: Callable[[World], dict[str, Any]] = lambda w: {}
    effect: Callable[[World], bool] | None = None  # default for delete_selected: object gone


ACTIONS: dict[tuple[str, str], ActionRow] = {
    # Journeys: Marketing builds and launches them.
    ("journeys.journey", "activate"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.paused_journey,
        effect=lambda w: fresh(w.paused_journey).status == Journey.Status.ACTIVE,
    ),
    ("journeys.journey", "pause"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.active_journey,
        effect=lambda w: fresh(w.active_journey).status == Journey.Status.PAUSED,
    ),
    ("journeys.journey", "archive"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.active_journey,
        effect=lambda w: fresh(w.active_journey).status == Journey.Status.ARCHIVED,
    ),
    ("journeys.journey", "duplicate"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.active_journey,
        effect=lambda w: Journey.objects.filter(slug="post-purchase-copy").exists(),
    ),
    ("journeys.journey", "new_version"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.active_journey,
        effect=lambda w: Journey.objects.filter(slug="post-purchase").count() == 2,
    ),
    # Enrollments: both Marketing and Support may take a customer out; only Marketing
    # (testing journeys) may time-travel, which sends real messages sooner.
    ("journeys.enrollment", "exit_enrollments"): ActionRow(
        {"marketing", "support", "superuser"},
        effect=lambda w: fresh(w.enrollment).state == Enrollment.State.EXITED,
    ),
    ("journeys.enrollment", "fast_forward"): ActionRow(
        {"marketing", "superuser"},
        effect=lambda w: fresh(w.enrollment).current_step.key == "nps",
    ),
    # Template tests: Marketing, to test contacts only.
    ("messaging.template", "send_test"): ActionRow(
        {"marketing", "superuser"},
        data=lambda w: {"apply": "Send test", "contact": w.test_contact.pk},
        effect=lambda w: Message.objects.filter(
            source="admin-test", contact=w.test_contact
        ).exists(),
    ),
    # Segments: Marketing recomputes them and fills static ones from the contact list.
    ("audiences.segment", "recompute"): ActionRow(
        {"marketing", "superuser"},
        effect=lambda w: fresh(w.objects["segment"]).last_computed_at is not None,
    ),
    ("messaging.contact", "add_to_static_segment"): ActionRow(
        {"marketing", "superuser"},
        select=lambda w: w.customer,
        data=lambda w: {"apply": "Add to segment", "segment": w.objects["static_segment"].pk},
        effect=lambda w: SegmentMembership.objects.filter(
            segment=w.objects["static_segment"], contact=w.customer
        ).exists(),
    ),
    # Exporting a segment's contacts (personal data in bulk): Marketing, audited.
    ("audiences.segment", "export_contacts"): ActionRow(
        {"marketing", "superuser"},
        effect=lambda w: AuditEntry.objects.filter(action="export").exists(),
    ),
    # Outbound webhooks are for administrators.
    ("outbound.webhooksubscription", "reenable"): ActionRow(
        SUPERUSER,
        select=lambda w: w.subscription,
        effect=lambda w: fresh(w.subscription).is_active,
    ),
    # Deleting is for superusers; messages, touchpoints, the audit log and the consent ledger
    # are logs nobody deletes.
    **{
        (label, "delete_selected"): ActionRow(SUPERUSER) for label in SELECT if label not in LEDGERS
    },
    **{(label, "delete_selected"): ActionRow(NOBODY) for label in LEDGERS},
    # Broadcasts have no bulk actions (a launched one is history; drafts are deleted from
    # their page), so not even superusers are offered delete_selected.
    ("campaigns.broadcast", "delete_selected"): ActionRow(NOBODY),
    # A topic is deleted by superusers only (SELECT makes it, so "gone" is checked by slug).
    ("messaging.topic", "delete_selected"): ActionRow(
        SUPERUSER, effect=lambda w: not Topic.objects.filter(slug="matrix-topic").exists()
    ),
}


@dataclass(frozen=True)
class UrlCase:
    name: str
    method: str
    args: Callable[[World], list[Any]]
    allowed: frozenset[str]
    data: Callable[[World], Any] = lambda w: {}
    json: bool = False
    effect: Callable[[World], bool] | None = None
    changes_nothing: bool = False  # even when allowed (a dry run)


def _no_args(w: World) -> list[Any]:
    return []


def _customer(w: World) -> list[Any]:
    return [w.customer.pk]


def _import(w: World) -> list[Any]:
    return [w.objects["contact_import"].pk]


STAFF_URLS: list[UrlCase] = [
    # Contact page tools: Support sends and sets consent.
    UrlCase("admin:messaging_contact_send", "get", _customer, {"support", "superuser"}),
    UrlCase(
        "admin:messaging_contact_send",
        "post",
        _customer,
        {"support", "superuser"},
        data=lambda w: {"channel": "sms", "body": "Hello from the admin"},
        effect=lambda w: Message.objects.filter(source="admin", contact=w.customer).exists(),
    ),
    UrlCase("admin:messaging_contact_consent", "get", _customer, {"support", "superuser"}),
    UrlCase(
        "admin:messaging_contact_consent",
        "post",
        _customer,
        {"support", "superuser"},
        data=lambda w: {"channel": "sms", "status": "unsubscribed", "note": "asked by phone"},
        effect=lambda w: Consent.objects.get(contact=w.customer, channel="sms").status
        == "unsubscribed",
    ),
    # Dry run: read-only, for anyone who sees journeys and contacts.
    UrlCase("admin:journeys_journey_dryrun", "get", lambda w: [w.active_journey.pk], ALL),
    UrlCase(
        "admin:journeys_journey_dryrun",
        "post",
        lambda w: [w.active_journey.pk],
        ALL,
        data=lambda w: {
            "contact": w.customer.pk,
            "properties": '{"order_id": "1"}',
            "replies": '{"nps": "3"}',
        },
        changes_nothing=True,
    ),
    # Exit one enrollment: Marketing and Support.
    UrlCase(
        "admin:journeys_enrollment_exit",
        "get",
        lambda w: [w.enrollment.pk],
        {"marketing", "support", "superuser"},
    ),
    UrlCase(
        "admin:journeys_enrollment_exit",
        "post",
        lambda w: [w.enrollment.pk],
        {"marketing", "support", "superuser"},
        effect=lambda w: fresh(w.enrollment).state == Enrollment.State.EXITED,
    ),
    # Django's own user admin page: administrators.
    UrlCase("admin:auth_user_password_change", "get", lambda w: [w.victim.pk], SUPERUSER),
    UrlCase(
        "admin:auth_user_password_change",
        "post",
        lambda w: [w.victim.pk],
        SUPERUSER,
        data=lambda w: {"password1": "A-new-pass-1234", "password2": "A-new-pass-1234"},
        effect=lambda w: fresh(w.victim).check_password("A-new-pass-1234"),
    ),
    # Template editor: preview for editors, tests (to test contacts) for Marketing.
    UrlCase(
        "touchline-template-preview",
        "post",
        _no_args,
        {"marketing", "superuser"},
        data=lambda w: {"channel": "sms", "body": "Hi {{ contact.first_name }}"},
        json=True,
    ),
    UrlCase("touchline-template-preview-contacts", "get", _no_args, {"marketing", "superuser"}),
    UrlCase(
        "touchline-template-send-test",
        "post",
        lambda w: [w.template.pk],
        {"marketing", "superuser"},
        data=lambda w: {"contact": w.test_contact.pk},
        json=True,
        effect=lambda w: Message.objects.filter(
            source="admin-test", contact=w.test_contact
        ).exists(),
    ),
    # Inbox: Support reads, answers and resolves.
    UrlCase("touchline-inbox", "get", _no_args, {"support", "superuser"}),
    UrlCase(
        "touchline-conversation",
        "get",
        _customer,
        {"support", "superuser"},
        effect=lambda w: Conversation.objects.get(contact=w.customer).status == "open",
    ),
    UrlCase(
        "touchline-conversation",
        "post",
        _customer,
        {"support", "superuser"},
        data=lambda w: {"channel": "sms", "body": "It ships today."},
        effect=lambda w: Message.objects.filter(source="inbox", contact=w.customer).exists(),
    ),
    UrlCase(
        "touchline-resolve",
        "post",
        _customer,
        {"support", "superuser"},
        effect=lambda w: Conversation.objects.get(contact=w.customer).status == "resolved",
    ),
    # The audit log's CSV export: only superusers until a user or group is granted
    # audit.view_auditentry and audit.export_auditentry; each export is itself recorded.
    UrlCase(
        "admin:audit_auditentry_export",
        "get",
        _no_args,
        SUPERUSER,
        effect=lambda w: AuditEntry.objects.filter(action="export").exists(),
    ),
    # Contact imports: Marketing validates, runs and follows them.
    UrlCase(
        "admin:audiences_contactimport_validate",
        "post",
        _import,
        {"marketing", "superuser"},
        effect=lambda w: fresh(w.objects["contact_import"]).status == "validated"
        and AuditEntry.objects.filter(action="import_validate").exists(),
    ),
    UrlCase(
        "admin:audiences_contactimport_run",
        "post",
        _import,
        {"marketing", "superuser"},
        effect=lambda w: fresh(w.objects["contact_import"]).status == "completed"
        and Contact.objects.filter(external_id="matrix-1").exists(),
    ),
    UrlCase("admin:audiences_contactimport_status", "get", _import, {"marketing", "superuser"}),
    UrlCase("admin:audiences_contactimport_errors", "get", _import, {"marketing", "superuser"}),
    # A static segment's list from a CSV: whoever may change segments.
    UrlCase(
        "admin:audiences_segment_static_list",
        "get",
        lambda w: [w.objects["static_segment"].pk],
        {"marketing", "superuser"},
    ),
    UrlCase(
        "admin:audiences_segment_static_list",
        "post",
        lambda w: [w.objects["static_segment"].pk],
        {"marketing", "superuser"},
        data=lambda w: {
            "operation": "add",
            "file": SimpleUploadedFile(
                "list.csv", f"external_id\n{w.customer.external_id}\n".encode()
            ),
        },
        effect=lambda w: SegmentMembership.objects.filter(
            segment=w.objects["static_segment"], contact=w.customer
        ).exists(),
    ),
    # Broadcasts: the review page (a dry run: changes nothing) and the report for anyone who
    # sees broadcasts; the test send (own test contacts) and the buttons for Marketing.
    UrlCase(
        "admin:campaigns_broadcast_review",
        "get",
        lambda w: [_broadcast(w).pk],
        {"viewer", "marketing", "superuser"},
        changes_nothing=True,
    ),
    UrlCase(
        "admin:campaigns_broadcast_send_test",
        "post",
        lambda w: [_broadcast(w).pk],
        {"marketing", "superuser"},
        effect=lambda w: Message.objects.filter(source="admin-test").exists(),
    ),
    UrlCase(
        "admin:campaigns_broadcast_launch",
        "post",
        lambda w: [_broadcast(w).pk],
        {"marketing", "superuser"},
        data=lambda w: {"confirm_name": "Matrix draft"},
        effect=lambda w: _broadcast_status("draft")(w) == "sending",
    ),
    UrlCase(
        "admin:campaigns_broadcast_pause",
        "get",
        lambda w: [_broadcast(w, "sending").pk],
        {"marketing", "superuser"},
    ),
    UrlCase(
        "admin:campaigns_broadcast_pause",
        "post",
        lambda w: [_broadcast(w, "sending").pk],
        {"marketing", "superuser"},
        data=lambda w: {"confirm": "on"},
        effect=lambda w: _broadcast_status("sending")(w) == "paused",
    ),
    UrlCase(
        "admin:campaigns_broadcast_resume",
        "post",
        lambda w: [_broadcast(w, "paused").pk],
        {"marketing", "superuser"},
        data=lambda w: {"confirm": "on"},
        effect=lambda w: _broadcast_status("paused")(w) != "paused",
    ),
    UrlCase(
        "admin:campaigns_broadcast_cancel",
        "post",
        lambda w: [_broadcast(w, "sending").pk],
        {"marketing", "superuser"},
        data=lambda w: {"confirm": "on"},
        effect=lambda w: _broadcast_status("sending")(w) == "cancelled",
    ),
    UrlCase(
        "admin:campaigns_broadcast_report",
        "get",
        lambda w: [_broadcast(w, "sending").pk],
        {"viewer", "marketing", "superuser"},
    ),
    UrlCase(
        "admin:campaigns_broadcast_report_data",
        "get",
        lambda w: [_broadcast(w, "sending").pk],
        {"viewer", "marketing", "superuser"},
    ),
    # Read-only pages: every role.
    UrlCase("touchline-timeline", "get", _customer, ALL),
    UrlCase("touchline-dashboard-data", "get", _no_args, ALL),
    UrlCase("touchline-journey-dashboard", "get", lambda w: [w.active_journey.pk], ALL),
    UrlCase("touchline-journey-dashboard-data", "get", lambda w: [w.active_journey.pk], ALL),
    # Reports (insights.view_reports: Marketing and Viewer): reading changes nothing; a CSV
    # download is an audited export.
    *(
        UrlCase(
            "touchline-reports",
            "get",
            lambda w, report=report: [report],
            {"viewer", "marketing", "superuser"},
            data=lambda w: {"journey": w.active_journey.slug},
            changes_nothing=True,
        )
        for report in ("channels", "journeys")
    ),
    UrlCase(
        "touchline-reports-csv",
        "get",
        lambda w: ["links"],
        {"viewer", "marketing", "superuser"},
        data=lambda w: {"journey": w.active_journey.slug},
        effect=lambda w: AuditEntry.objects.filter(
            action="export", object_type="insights.report"
        ).exists(),
    ),
    # The journey map: read-only, for whoever may view the journey's dashboard.
    UrlCase("touchline-journey-map", "get", lambda w: [w.active_journey.pk], ALL),
    UrlCase("touchline-journey-map-data", "get", lambda w: [w.active_journey.pk], ALL),
    # A journey's experiment results (holdout and splits): whoever may view journeys.
    UrlCase(
        "touchline-journey-experiment",
        "get",
        lambda w: [w.active_journey.pk],
        ALL,
        changes_nothing=True,
    ),
    # The segment builder's live count: read-only, for everyone who sees segments.
    UrlCase(
        "admin:audiences_segment_preview",
        "post",
        _no_args,
        ALL,
        data=lambda w: {"definition": {"field": "timezone", "op": "exists"}},
        json=True,
        changes_nothing=True,
    ),
]


# --- Reading the admin site and the URLs ------------------------------------------------


def registered_actions() -> list[tuple[str, str]]:
    """(model label, action name) for every action of every registered ModelAdmin."""
    found = []
    for model, model_admin in admin.site._registry.items():
        for _func, name, _description in model_admin._get_base_actions():
            found.append((model._meta.label_lower, name))
    return sorted(found)


def _model_admin(label: str) -> admin.ModelAdmin:
    return admin.site._registry[apps.get_model(label)]


def _walk(patterns, prefix: str = "", namespace: str | None = None) -> Iterator[tuple]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern), p.namespace or namespace)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), namespace, p.name


def staff_url_names() -> list[str]:
    """Every named staff URL: the ModelAdmins' own views (beyond Django's standard
    changelist/add/change/delete/history, which check the model permissions), and every
    other view mounted under /admin/."""
    names = set()
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        standard = {"%s_%s_%s" % (*info, view) for view in STANDARD_VIEWS}  # noqa: UP031
        for pattern in model_admin.get_urls():
            if pattern.name and pattern.name not in standard:
                names.add(f"admin:{pattern.name}")
    for route, namespace, name in _walk(get_resolver().url_patterns):
        if route.startswith("admin/") and namespace != "admin":
            assert name, f"staff URL {route} has no name: name it and add it to STAFF_URLS"
            names.add(name)
    return sorted(names)


STANDARD_VIEWS = ("changelist", "add", "history", "delete", "change")


# --- Coverage of the tables -------------------------------------------------------------


def test_every_admin_action_has_a_row_and_declares_its_permissions():
    actions = registered_actions()
    missing = [a for a in actions if a not in ACTIONS]
    assert missing == [], f"admin actions without a row in ACTIONS: {missing}"
    assert sorted(ACTIONS) == actions, "ACTIONS has rows for actions that no longer exist"
    for label, name in actions:
        func = _model_admin(label).get_action(name)[0]
        assert getattr(func, "allowed_permissions", ()), f"{label}.{name} declares no permission"


def test_every_staff_url_has_a_row():
    names = staff_url_names()
    covered = {case.name for case in STAFF_URLS}
    missing = [n for n in names if n not in covered]
    assert missing == [], f"staff URLs without a row in STAFF_URLS: {missing}"
    assert covered <= set(names), f"rows for URLs that no longer exist: {covered - set(names)}"


@pytest.mark.django_db
def test_the_groups_hold_the_role_table():
    ensure_staff_groups()
    for name, codes in GROUPS.items():
        have = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=name).permissions.select_related("content_type")
        }
        assert have == set(codes), f"{name}: permissions that do not exist {set(codes) - have}"
    perms = {name: set(codes) for name, codes in GROUPS.items()}
    assert "messaging.send_message" in perms["Support"]
    assert "messaging.send_test_message" in perms["Marketing"]
    assert not {"messaging.send_message", "messaging.send_test_message"} & perms["Viewer"]
    assert "messaging.send_message" not in perms["Marketing"]
    assert not any("manage_test_contacts" in codes for codes in perms.values())
    assert all(code.split(".")[1].startswith("view_") for code in perms["Viewer"])


# --- The matrix -------------------------------------------------------------------------
#
# One world per action or URL; each role runs in a savepoint rolled back afterwards, so every
# role starts from the same rows (and the world is built 42 times, not 168).


class _Undo(Exception):
    pass


def as_each_role(client, simulator, run: Callable[[str], None]) -> None:
    """Run `run(role)` for every role on the same starting rows; report every role's failure."""
    failures = []
    for role in ROLES:
        simulator.reset()
        try:
            with transaction.atomic():
                try:
                    run(role)
                except AssertionError as exc:
                    failures.append(f"{role}: {exc}")
                raise _Undo
        except _Undo:
            pass
    assert failures == [], "\n".join(failures)


def _action_ids() -> list[tuple[str, str]]:
    # Read from the admin site: a new action gets a case (which fails until it has a row).
    return registered_actions()


@pytest.mark.parametrize(
    ("label", "action"), _action_ids(), ids=[".".join(a) for a in _action_ids()]
)
def test_admin_action(client, world, simulator, django_capture_on_commit_callbacks, label, action):
    row = ACTIONS.get((label, action))
    assert row is not None, f"{label}.{action} has no row in ACTIONS"
    changelist = reverse(f"admin:{label.replace('.', '_')}_changelist")

    def run(role: str) -> None:
        login(client, world, role)
        listed = client.get(changelist)
        action_form = listed.context["action_form"] if listed.status_code == 200 else None
        offered = action_form is not None and action in dict(action_form.fields["action"].choices)
        obj = (row.select or SELECT[label])(world)
        post = {
            "action": action,
            "_selected_action": [obj.pk],
            "index": 0,
            **({"post": "yes"} if action == "delete_selected" else {}),
            **row.data(world),
        }
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(changelist, post)
        if role in row.allowed:
            assert offered, f"not offered {label}.{action}"
            assert response.status_code in (200, 302), response.status_code
            effect = row.effect or _gone(row.select or SELECT[label])
            assert effect(world), f"ran {label}.{action} but it had no effect"
        else:
            assert not offered, f"offered {label}.{action}"
            # A forged POST: the admin refuses (403 without the list, else "no action selected").
            assert response.status_code in (200, 302, 403), response.status_code
            assert_untouched(before, simulator, f"forging {label}.{action}")

    as_each_role(client, simulator, run)


@pytest.mark.parametrize("case", STAFF_URLS, ids=[f"{c.name}-{c.method}" for c in STAFF_URLS])
def test_staff_url(client, world, simulator, django_capture_on_commit_callbacks, case):
    def run(role: str) -> None:
        login(client, world, role)
        url = reverse(case.name, args=case.args(world))
        data = case.data(world)
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            if case.method == "get":
                response = client.get(url, data)
            elif case.json:
                response = client.post(url, json.dumps(data), content_type="application/json")
            else:
                response = client.post(url, data)
        if role in case.allowed:
            assert response.status_code in (200, 201, 302), (
                response.status_code,
                response.content[:300],
            )
            form = (response.context or {}).get("form") if response.status_code == 200 else None
            assert not (case.method == "post" and form is not None and form.errors), form.errors
            if case.effect is not None:
                assert case.effect(world), f"{case.method} {case.name} had no effect"
            if case.changes_nothing:
                assert_untouched(before, simulator, f"{case.method} {case.name}")
        else:
            assert response.status_code == 403, (response.status_code, response.content[:300])
            assert_untouched(before, simulator, f"{case.method} {case.name}")

    as_each_role(client, simulator, run)
