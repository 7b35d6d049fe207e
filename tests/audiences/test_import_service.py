"""Contact import: mapping, validation pass, upsert rules, consent ledger, re-runs,
checkpoints, and a query count that does not grow with the file."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.import_models import ContactImport
from audiences.imports import ImportInvalid, import_run, import_transition
from messaging.models import Consent, ConsentChange, Contact, Touchpoint
from tests.factories import ContactFactory

from .import_helpers import imported, uploaded, validated

pytestmark = pytest.mark.django_db

HEADER = "external_id,email,phone,first_name,attributes.plan,attributes.orders:number,consent.sms\n"
ROWS = (
    "c-1,ada@example.com,+14155552671,Ada,pro,3,yes\n"
    "c-2,BOB@Example.com,+1 (415) 555-2672,Bob,free,0,no\n"
    ",carol@example.com,,Carol,team,,\n"
)
SOURCE = "imported from checkout opt-in, 2026-10"


def test_creates_contacts_with_typed_attributes_and_consent_in_the_ledger():
    done = imported(HEADER + ROWS, consent_source=SOURCE)
    assert done.status == ContactImport.Status.COMPLETED
    assert (done.created_count, done.updated_count, done.error_count) == (3, 0, 0)
    ada = Contact.objects.get(external_id="c-1")
    assert ada.attributes == {"plan": "pro", "orders": 3}
    assert ada.created_via == "import"
    bob = Contact.objects.get(external_id="c-2")
    assert (bob.email, bob.phone) == ("bob@example.com", "+14155552672")
    carol = Contact.objects.get(email="carol@example.com")
    assert carol.external_id is None and carol.attributes == {"plan": "team"}
    assert Consent.objects.get(contact=ada, channel="sms").status == "subscribed"
    change = ConsentChange.objects.get(contact=ada, channel="sms")
    assert (change.source, change.note, change.previous_status) == ("import", SOURCE, "unknown")
    assert ConsentChange.objects.get(contact=bob).status == "unsubscribed"
    assert Touchpoint.objects.filter(kind="consent_changed", contact=ada).count() == 1


def test_re_running_the_same_file_changes_nothing():
    imported(HEADER + ROWS, consent_source=SOURCE)
    before = dict(Contact.objects.values_list("pk", "updated_at"))
    ledger = ConsentChange.objects.count()
    with CaptureQueriesContext(connection) as captured:
        again = imported(HEADER + ROWS, consent_source=SOURCE)
    touching = [
        q["sql"]
        for q in captured.captured_queries
        if '"messaging_contact"' in q["sql"]
        and ("FOR UPDATE" in q["sql"] or q["sql"].startswith(("UPDATE", "INSERT")))
    ]
    assert touching == []  # not even a row lock
    assert (again.created_count, again.updated_count, again.unchanged_count) == (0, 0, 3)
    assert dict(Contact.objects.values_list("pk", "updated_at")) == before
    assert ConsentChange.objects.count() == ledger


def test_upsert_by_external_id_else_email_else_phone():
    by_ext = ContactFactory(external_id="c-1", email="old@example.com", first_name="Old")
    by_email = ContactFactory(external_id=None, email="carol@example.com", phone="")
    by_phone = ContactFactory(external_id=None, email="", phone="+14155552672")
    done = imported(HEADER + ROWS, consent_source=SOURCE)
    assert (done.created_count, done.updated_count) == (0, 3)
    by_ext.refresh_from_db()
    assert (by_ext.email, by_ext.first_name) == ("ada@example.com", "Ada")
    by_email.refresh_from_db()
    assert by_email.first_name == "Carol"
    by_phone.refresh_from_db()
    # Found by phone and given the row's external id (it had none).
    assert (by_phone.external_id, by_phone.email) == ("c-2", "bob@example.com")
    assert Contact.objects.count() == 3


def test_an_external_id_row_never_takes_a_contact_with_another_external_id():
    other = ContactFactory(external_id="someone-else", email="ada@example.com")
    imported("external_id,email\nc-1,ada@example.com\n")
    assert Contact.objects.get(external_id="c-1").pk != other.pk
    other.refresh_from_db()
    assert other.external_id == "someone-else"


def test_rows_finding_one_contact_by_different_keys_are_all_applied():
    # One batch: the first row finds the contact by external id, the second by email.
    contact = ContactFactory(
        external_id="c-1", email="ada@example.com", first_name="Old", last_name="Old"
    )
    done = imported(
        "external_id,email,first_name,last_name\nc-1,,Augusta,\n,ada@example.com,,King\n"
    )
    assert (done.created_count, done.updated_count, done.error_count) == (0, 2, 0)
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name) == ("Augusta", "King")
    assert Contact.objects.count() == 1


def test_rows_match_keys_with_quotes_commas_braces_and_non_ascii_text():
    odd = ['a"b\\c', "x,{y}", "ü-1 ☃", "null", "NULL"]
    contacts = [ContactFactory(external_id=key, email="", phone="") for key in odd]
    by_email = ContactFactory(external_id=None, email="o'neil@example.com", phone="")
    rows = "".join(f'"{key.replace(chr(34), chr(34) * 2)}",,Renamed\n' for key in odd)
    done = imported("external_id,email,first_name\n" + rows + ",O'Neil@example.com,Renamed\n")
    assert (done.created_count, done.updated_count, done.error_count) == (0, 6, 0)
    for contact in [*contacts, by_email]:
        contact.refresh_from_db()
        assert contact.first_name == "Renamed"


def test_validation_reports_row_errors_and_what_would_change_without_writing():
    ContactFactory(external_id="c-1", email="ada@example.com", phone="+14155552671")
    text = (
        HEADER + "c-1,ada@example.com,+14155552671,Ada,pro,3,yes\n"
        "c-3,not-an-email,+14155552673,Dan,pro,3,\n"
        "c-4,dan@example.com,12345,Dan,pro,many,\n"
        "c-5,eve@example.com,,Eve,,,\n"
    )
    contact_import = validated(text, consent_source=SOURCE)
    summary = contact_import.validation
    assert contact_import.status == ContactImport.Status.VALIDATED
    assert (summary["would_create"], summary["would_update"], summary["error_rows"]) == (1, 1, 2)
    errors = {(e["line"], e["column"]) for e in summary["errors"]}
    assert errors == {(3, "email"), (4, "phone"), (4, "attributes.orders:number")}
    assert Contact.objects.count() == 1
    assert not ConsentChange.objects.exists()


def test_bad_rows_are_skipped_whole_and_reported():
    text = HEADER + "c-1,ada@example.com,+14155552671,Ada,pro,lots,yes\nc-2,b@example.com,,B,,,\n"
    done = imported(text, consent_source=SOURCE)
    assert (done.created_count, done.error_count) == (1, 1)
    assert not Contact.objects.filter(external_id="c-1").exists()
    assert list(done.row_errors.values_list("row", "column")) == [(2, "attributes.orders:number")]


@pytest.mark.parametrize(
    ("header", "mapping", "source", "where"),
    [
        ("external_id,shoe_size\n", {}, "", "shoe_size"),  # unknown column
        ("external_id,sms\n", {"sms": "consent.sms"}, "", "consent_source"),
        ("first_name\n", {}, "", ""),  # nothing to match rows on
        ("external_id,x\n", {"x": "attributes.y:colour"}, "", "x"),
        ("external_id\n", {"nope": "email"}, "", "nope"),
    ],
)
def test_header_and_mapping_errors_refuse_the_upload(header, mapping, source, where):
    with pytest.raises(ImportInvalid) as caught:
        uploaded(header + "c-1,1\n", mapping=mapping, consent_source=source)
    assert where in caught.value.errors
    assert not ContactImport.objects.exists()


def test_an_import_never_resubscribes_an_unsubscribed_contact():
    contact = ContactFactory(external_id="c-1")
    Consent.objects.create(
        contact=contact, channel="sms", status="unsubscribed", changed_at="2026-01-01T00:00Z"
    )
    done = imported("external_id,consent.sms\nc-1,yes\n", consent_source=SOURCE)
    assert Consent.objects.get(contact=contact, channel="sms").status == "unsubscribed"
    assert not ConsentChange.objects.exists()
    assert done.row_errors.get().column == "consent.sms"


def test_a_file_unreadable_past_some_batches_fails_the_run_after_committing_them():
    # An error met while reading a later batch fails the run; the batches before it stay.
    text = "external_id,first_name\n" + "".join(f"c-{n},Name {n:04d}\n" for n in range(600))
    contact_import = validated(text)
    import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
    with open(contact_import.file.path, "ab") as stored:  # changed on disk after validation
        stored.write(b"c-bad,\xff\xfe\n")
    assert import_run(contact_import=contact_import, batch_size=100) is False
    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.FAILED
    assert "not UTF-8" in contact_import.failure
    # Text is decoded 8 KB at a time: the bad bytes are met while reading batch 3 or later.
    assert contact_import.processed_rows >= 200
    assert Contact.objects.count() == contact_import.processed_rows


def test_a_crashed_run_continues_after_its_last_checkpoint():
    text = "external_id,first_name\n" + "".join(f"c-{n},N{n}\n" for n in range(10))
    contact_import = validated(text)
    import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
    calls = iter([False])  # stop after the first batch, as if the worker died there
    more = import_run(contact_import=contact_import, batch_size=4, keep_going=lambda: next(calls))
    assert more is True
    contact_import.refresh_from_db()
    assert (contact_import.processed_rows, Contact.objects.count()) == (4, 4)
    import_run(contact_import=contact_import, batch_size=4)
    contact_import.refresh_from_db()
    assert contact_import.status == ContactImport.Status.COMPLETED
    assert (contact_import.processed_rows, contact_import.created_count) == (10, 10)
    assert Contact.objects.count() == 10


def test_queries_per_batch_do_not_depend_on_the_number_of_rows():
    def queries(n: int) -> int:
        rows = "".join(
            f"q{n}-{i},q{n}-{i}@example.com,+1415{200 + n}{i:04d},Name,pro,{i},yes\n"
            for i in range(n)
        )
        contact_import = validated(HEADER + rows, consent_source=SOURCE)
        import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
        with CaptureQueriesContext(connection) as captured:
            import_run(contact_import=contact_import, batch_size=1000)
        assert Contact.objects.filter(external_id__startswith=f"q{n}-").count() == n
        # (60 new contacts go in by COPY on PostgreSQL: every column as the ORM writes it)
        last = Contact.objects.get(external_id=f"q{n}-{n - 1}")
        assert (last.attributes, last.created_via, last.timezone) == (
            {"plan": "pro", "orders": n - 1},
            "import",
            "UTC",
        )
        assert Consent.objects.get(contact=last).status == "subscribed"
        return len(captured)

    # (SQLite splits an INSERT over 999 parameters: 40 new contacts stay under it; on
    # PostgreSQL 60 go in by COPY.)
    assert queries(5) == queries(60 if connection.vendor == "postgresql" else 40)


def test_consent_set_many_writes_what_consent_set_writes_and_can_refuse_resubscribing():
    from django.utils import timezone

    from messaging.services.consent import consent_set, consent_set_many

    one, many, stopped = ContactFactory(), ContactFactory(), ContactFactory()
    at = timezone.now()
    consent_set(
        contact=one, channel="sms", status="subscribed", source="import", note="n", occurred_at=at
    )
    Consent.objects.create(contact=stopped, channel="sms", status="unsubscribed", changed_at=at)
    changed = consent_set_many(
        changes={(many.pk, "sms"): "subscribed", (stopped.pk, "sms"): "subscribed"},
        source="import",
        note="n",
        occurred_at=at,
        never_resubscribe=True,
    )
    assert changed == 1
    assert Consent.objects.get(contact=stopped).status == "unsubscribed"

    def shape(contact):
        change = ConsentChange.objects.get(contact=contact)
        touchpoint = Touchpoint.objects.get(contact=contact, kind="consent_changed")
        return (
            (change.channel, change.status, change.previous_status, change.source, change.note),
            (touchpoint.direction, touchpoint.channel, touchpoint.data, touchpoint.occurred_at),
            touchpoint.dedupe_key == f"consent:{change.pk}",
        )

    assert shape(many) == shape(one)


def test_deleting_an_import_deletes_its_file(django_capture_on_commit_callbacks):
    from audiences.imports import import_delete

    contact_import = uploaded("external_id\nc-1\n")
    storage, name = contact_import.file.storage, contact_import.file.name
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        import_delete(contact_import=contact_import)
    assert not storage.exists(name)
    assert not ContactImport.objects.exists()
