"""The audit log is append-only (admin and database), filterable, and exported as CSV only
to those allowed; the consent ledger is read-only in the admin."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.admin import csv_cell
from audit.models import AppendOnlyError, AuditEntry
from audit.services import Target, audit_record
from messaging.models import ConsentChange, Topic
from messaging.services import consent_set, topic_subscription_set
from tests.factories import ContactFactory

from .conftest import staff_with

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:audit_auditentry_changelist"
EXPORT = "admin:audit_auditentry_export"


def record(action="pause", actor="cron", label="Welcome", **kwargs) -> AuditEntry:
    return audit_record(
        actor=actor, action=action, target=Target("journeys.journey", "7", label), **kwargs
    )


# --- append-only -------------------------------------------------------------------------


def test_admin_refuses_add_change_and_delete_to_a_superuser(boss):
    entry = record(before={"status": "active"}, after={"status": "paused"})
    change = reverse("admin:audit_auditentry_change", args=[entry.pk])

    assert boss.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert boss.post(reverse("admin:audit_auditentry_add"), {"action": "x"}).status_code == 403
    page = boss.get(change)  # viewing is fine, with nothing to submit
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert b"deletelink" not in page.content
    boss.post(change, {"action": "forged", "actor_label": "someone else"})
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert boss.post(delete, {"post": "yes"}).status_code == 403
    listing = boss.get(reverse(CHANGELIST))
    assert listing.context["action_form"] is None  # no bulk delete, no actions at all
    boss.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )

    fresh = AuditEntry.objects.get(pk=entry.pk)
    assert (fresh.action, fresh.actor_label) == ("pause", "cron")
    assert AuditEntry.objects.count() == 1


def test_no_one_can_be_granted_add_change_or_delete():
    from django.contrib.auth.models import Permission

    codenames = set(
        Permission.objects.filter(content_type__app_label="audit").values_list(
            "codename", flat=True
        )
    )
    assert codenames == {"view_auditentry", "export_auditentry"}


def test_the_model_refuses_update_and_delete():
    entry = record()
    entry.action = "forged"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "pause"


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigger is PostgreSQL's (make test uses it)"
)
def test_the_database_refuses_raw_update_and_delete():
    """On PostgreSQL a trigger refuses them whoever sends them; the embedded SQLite default
    has no trigger (the model and queryset refusals above are what holds there)."""
    entry = record()
    for sql in (
        "UPDATE audit_auditentry SET action = 'forged' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == "pause"
    # Inserting stays allowed.
    assert record(action="archive").pk > entry.pk


# --- the consent ledger ------------------------------------------------------------------


def test_consent_ledger_is_read_only_for_a_superuser(boss):
    contact = ContactFactory()
    consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    change = ConsentChange.objects.get()
    url = reverse("admin:messaging_consentchange_change", args=[change.pk])

    assert boss.get(reverse("admin:messaging_consentchange_changelist")).status_code == 200
    assert boss.get(url).status_code == 200
    assert boss.get(reverse("admin:messaging_consentchange_add")).status_code == 403
    boss.post(url, {"status": "unsubscribed", "note": "forged"})
    delete = reverse("admin:messaging_consentchange_delete", args=[change.pk])
    assert boss.post(delete, {"post": "yes"}).status_code == 403

    fresh = ConsentChange.objects.get()
    assert (fresh.status, fresh.note) == ("subscribed", "")
    assert not AuditEntry.objects.exists()  # nothing was changed, so nothing recorded


def test_consent_history_inline_cannot_delete_rows(boss):
    contact = ContactFactory()
    consent_set(contact=contact, channel="sms", status="subscribed", source="api")
    url = reverse("admin:messaging_contact_change", args=[contact.pk])
    page = boss.get(url)
    [inline] = [
        i for i in page.context["inline_admin_formsets"] if i.formset.model is ConsentChange
    ]
    assert not inline.formset.can_delete
    assert not inline.has_delete_permission


# --- filters -----------------------------------------------------------------------------


def test_changelist_filters_by_action_object_type_actor_and_date(boss, superuser):
    old = record(action="pause")
    dated = AuditEntry.objects.create(
        at=timezone.now() - dt.timedelta(days=40),
        actor_kind="system",
        actor_label="cron",
        action="archive",
        object_type="journeys.journey",
        object_id="7",
    )
    by_user = audit_record(
        actor=superuser, action="activate", target=Target("messaging.template", "3", "Hi")
    )

    def shown(**params) -> set[int]:
        response = boss.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {e.pk for e in response.context["cl"].result_list}

    assert shown() == {old.pk, dated.pk, by_user.pk}
    assert shown(action="activate") == {by_user.pk}
    assert shown(object_type="journeys.journey") == {old.pk, dated.pk}
    assert shown(actor=f"user:{superuser.pk}") == {by_user.pk}
    assert shown(actor="system:") == {old.pk, dated.pk}
    since = (timezone.now() - dt.timedelta(days=7)).isoformat()
    assert shown(at__gte=since) == {old.pk, by_user.pk}
    assert shown(q="Hi") == {by_user.pk}


# --- CSV export --------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_export_streams_the_filtered_log_with_formulas_neutralised(client):
    user = staff_with("audit.view_auditentry", "audit.export_auditentry")
    client.force_login(user)
    record(action="pause", label='=HYPERLINK("http://evil","x")')
    record(action="archive", label="Plain", after={"note": "+1 call me"})

    response = client.get(reverse(EXPORT), {"action": "archive"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
    header, *rows = _csv(response)
    assert header[:5] == ["at", "actor_kind", "actor_id", "actor", "action"]
    assert [row[4] for row in rows] == ["archive"]  # only the filtered rows
    assert rows[0][7] == "Plain"
    assert '"+1 call me"' in rows[0][8]

    everything = _csv(client.get(reverse(EXPORT)))[1:]
    labels = {row[7] for row in everything}
    assert '\'=HYPERLINK("http://evil","x")' in labels
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in everything for cell in row)
    # The exports themselves are recorded, with their filters.
    exports = AuditEntry.objects.filter(action="export").order_by("id")
    assert [e.context["details"]["filters"] for e in exports] == [{"action": ["archive"]}, {}]
    assert exports[0].actor_id == str(user.pk)


def test_export_is_refused_without_the_permission_and_exports_nothing(client, admin_client):
    record(label="Secret plans")
    viewer = staff_with("audit.view_auditentry")
    client.force_login(viewer)

    response = client.get(reverse(EXPORT))

    assert response.status_code == 403
    assert not getattr(response, "streaming", False)
    assert b"Secret plans" not in response.content
    assert not AuditEntry.objects.filter(action="export").exists()
    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert reverse(EXPORT).encode() not in listing.content  # no link either
    # A superuser has the permission and sees the link.
    assert reverse(EXPORT).encode() in admin_client.get(reverse(CHANGELIST)).content


def test_export_with_an_unknown_filter_is_a_400(boss):
    response = boss.get(reverse(EXPORT), {"nope__startswith": "x"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+33 1 23", "'+33 1 23"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("  =1", "'  =1"),
        ("Welcome", "Welcome"),
        (None, ""),
        ({"a": 1}, '{"a": 1}'),
    ],
)
def test_csv_cells(value, cell):
    assert csv_cell(value) == cell


def test_the_consent_ledger_list_takes_the_same_queries_for_more_topic_changes(boss):
    """Topic and contact come with the rows (list_select_related): no query per row."""
    url = reverse("admin:messaging_consentchange_changelist")

    def changes(n: int) -> None:
        for _ in range(n):
            topic = Topic.objects.create(slug=f"t{Topic.objects.count()}", name="T")
            topic_subscription_set(
                contact=ContactFactory(), topic=topic, status="unsubscribed", source="api"
            )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = boss.get(url)
        assert response.status_code == 200
        return len(captured)

    changes(2)
    few = queries()
    changes(6)
    assert ConsentChange.objects.filter(topic__isnull=False).count() == 8
    assert queries() == few
