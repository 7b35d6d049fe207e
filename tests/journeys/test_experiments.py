"""Journey experiments: the A/B split step (deterministic per contact, weighted, end to end
through the engine to the simulator, validated in the builder) and the holdout (a control
group that enters, gets nothing and completes at once)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from journeys.dryrun import dry_run
from journeys.experiments import in_holdout, split_variant, variants_problems
from journeys.forms import StepForm
from journeys.lifecycle import journey_activate, journey_copy
from journeys.models import Enrollment, Journey, JourneyMessage, Step, StepVisit
from journeys.validation import journey_problems
from messaging.models import Contact, Message, Touchpoint
from tests.factories import ContactFactory
from tests.journeys.test_steps import build_journey, ingest, step, templates  # noqa: F401

pytestmark = pytest.mark.django_db

AB = [{"key": "a", "weight": 50, "goto": "send-a"}, {"key": "b", "weight": 50, "goto": "send-b"}]


def ab_journey(status: str = "active", **fields) -> Journey:
    templates("copy-a", "sms", body="Variant A for {{ event.order_id }}")
    templates("copy-b", "sms", body="Variant B for {{ event.order_id }}")
    journey = build_journey(
        step("split", "split", variants=AB),
        step("send-a", "send", "end", template="copy-a", channel="sms", fallback_channels=[]),
        step("send-b", "send", "end", template="copy-b", channel="sms", fallback_channels=[]),
        **fields,
    )
    Journey.objects.filter(pk=journey.pk).update(status=status)
    journey.refresh_from_db()
    return journey


def variant_for(journey: Journey, contact: Contact, step_key: str = "split") -> str:
    variants = journey.steps.get(key=step_key).config["variants"]
    return split_variant(
        journey_slug=journey.slug, step_key=step_key, contact_id=contact.pk, variants=variants
    )["key"]


def contacts_in_each(journey: Journey) -> dict[str, Contact]:
    """One contact per variant (made until both are found; the assignment is a hash)."""
    found: dict[str, Contact] = {}
    while len(found) < 2:
        contact = ContactFactory()
        found.setdefault(variant_for(journey, contact), contact)
    return found


# --- The assignment ---------------------------------------------------------------------


def test_the_same_contact_always_gets_the_same_variant_and_others_spread():
    variants = [{"key": "a", "weight": 1, "goto": "x"}, {"key": "b", "weight": 1, "goto": "y"}]
    picks = {
        split_variant(journey_slug="j", step_key="s", contact_id=7, variants=variants)["key"]
        for _ in range(20)
    }
    assert len(picks) == 1
    # Another journey or step is another draw: not every contact lands alike in both.
    same = sum(
        split_variant(journey_slug="j", step_key="s", contact_id=i, variants=variants)
        == split_variant(journey_slug="j", step_key="t", contact_id=i, variants=variants)
        for i in range(1, 401)
    )
    assert 140 < same < 260


def test_weights_share_out_two_thousand_contacts():
    # Real contact ids, made in one statement.
    Contact.objects.bulk_create(
        [Contact(external_id=f"w-{i}", first_name="W") for i in range(2000)]
    )
    ids = list(Contact.objects.filter(external_id__startswith="w-").values_list("pk", flat=True))
    assert len(ids) == 2000
    variants = [
        {"key": "a", "weight": 70, "goto": "x"},
        {"key": "b", "weight": 20, "goto": "y"},
        {"key": "c", "weight": 10, "goto": "z"},
    ]
    counts = Counter(
        split_variant(journey_slug="promo", step_key="split", contact_id=pk, variants=variants)[
            "key"
        ]
        for pk in ids
    )
    # Expected 1400 / 400 / 200; three standard deviations is under 65 for each.
    assert abs(counts["a"] - 1400) < 65
    assert abs(counts["b"] - 400) < 55
    assert abs(counts["c"] - 200) < 45
    held = sum(in_holdout(journey_slug="promo", contact_id=pk, percent=10) for pk in ids)
    assert abs(held - 200) < 45
    assert not any(in_holdout(journey_slug="promo", contact_id=pk, percent=0) for pk in ids)


# --- The engine -------------------------------------------------------------------------


def test_each_variant_sends_its_own_message_and_is_recorded(simulator, ingest):  # noqa: F811
    journey = ab_journey()
    people = contacts_in_each(journey)

    for contact in people.values():
        ingest("order.completed", contact, order_id="77")

    sent = {m["to"]: m["body"] for m in simulator.messages()}
    assert sent == {
        people["a"].phone: "Variant A for 77",
        people["b"].phone: "Variant B for 77",
    }
    for key, contact in people.items():
        enrollment = Enrollment.objects.get(contact=contact)
        assert enrollment.state == "completed"
        assert enrollment.context["steps"]["split"] == {"outcome": f"variant:{key}", "variant": key}
        visits = dict(enrollment.visits.values_list("step__key", "outcome"))
        assert visits == {"split": f"variant:{key}", f"send-{key}": ""}
        link = JourneyMessage.objects.get(enrollment=enrollment)
        assert link.step.key == f"send-{key}"
        [tp] = Touchpoint.objects.filter(contact=contact, kind="split_variant")
        assert (tp.data["variant"], tp.data["goto"]) == (key, f"send-{key}")


def test_the_variant_holds_across_versions_and_later_steps_can_branch_on_it(simulator, ingest):  # noqa: F811
    templates("copy-a", "sms", body="A")
    templates("copy-b", "sms", body="B")
    templates("after-b", "sms", body="B again")
    journey = build_journey(
        step(
            "split",
            "split",
            variants=[
                {"key": "a", "weight": 1, "goto": "check"},
                {"key": "b", "weight": 1, "goto": "check"},
            ],
        ),
        step(
            "check",
            "branch",
            rules=[
                {
                    "when": [{"field": "steps.split.variant", "op": "eq", "value": "b"}],
                    "goto": "send-b",
                }
            ],
            default="send-a",
        ),
        step("send-a", "send", "end", template="copy-a", channel="sms", fallback_channels=[]),
        step("send-b", "send", "end", template="copy-b", channel="sms", fallback_channels=[]),
        entry_policy="every_time",
    )
    people = contacts_in_each(journey)
    for contact in people.values():
        ingest("order.completed", contact)
    v2 = journey_copy(journey=journey)
    assert journey_activate(journey=v2) == []
    for contact in people.values():
        ingest("order.completed", contact)

    for key, contact in people.items():
        outcomes = list(
            StepVisit.objects.filter(enrollment__contact=contact, step__key="split")
            .order_by("enrollment__journey__version")
            .values_list("enrollment__journey__version", "outcome")
        )
        assert outcomes == [(1, f"variant:{key}"), (2, f"variant:{key}")]
        bodies = list(Message.objects.filter(contact=contact).values_list("body", flat=True))
        assert bodies == [key.upper(), key.upper()]


# --- Holdout ----------------------------------------------------------------------------


def test_held_out_contacts_get_nothing_and_the_others_get_the_journey(simulator, ingest):  # noqa: F811
    templates("thanks", "sms")
    journey = build_journey(
        step("thank-you", "send", template="thanks", channel="sms", fallback_channels=[]),
        holdout_percent=50,
    )
    groups: dict[bool, list[Contact]] = {True: [], False: []}
    while min(len(g) for g in groups.values()) < 2:
        contact = ContactFactory()
        groups[in_holdout(journey_slug=journey.slug, contact_id=contact.pk, percent=50)].append(
            contact
        )

    for group in groups.values():
        for contact in group:
            ingest("order.completed", contact, order_id="5")

    for contact in groups[True]:
        enrollment = Enrollment.objects.get(contact=contact)
        assert (enrollment.holdout, enrollment.state, enrollment.exit_reason) == (
            True,
            "completed",
            "holdout",
        )
        assert enrollment.ended_at is not None and not enrollment.visits.exists()
        assert not Message.objects.filter(contact=contact).exists()
        kinds = set(Touchpoint.objects.filter(contact=contact).values_list("kind", flat=True))
        assert {"journey_entered", "journey_holdout", "journey_completed"} <= kinds
    for contact in groups[False]:
        enrollment = Enrollment.objects.get(contact=contact)
        assert (enrollment.holdout, enrollment.state) == (False, "completed")
        assert Message.objects.filter(contact=contact, status="sent").count() == 1
    held_phones = {c.phone for c in groups[True]}
    assert held_phones.isdisjoint(m["to"] for m in simulator.messages())
    assert len(simulator.messages()) == len(groups[False])


def test_dry_run_shows_the_variant_and_the_holdout(simulator):
    journey = ab_journey()
    people = contacts_in_each(journey)
    result = dry_run(journey=journey, contact=people["b"], properties={"order_id": "9"})
    assert result.problems == []
    lines = [(line.step, line.what, line.detail) for line in result.lines]
    assert ("split", "takes a split variant", "variant b → send-b") in lines
    assert any(what == "sends SMS" and "Variant B for 9" in detail for _, what, detail in lines)
    assert not Enrollment.objects.exists() and simulator.messages() == []

    journey.holdout_percent = 50
    journey.save()
    held = next(
        c
        for c in iter(ContactFactory, None)
        if in_holdout(journey_slug=journey.slug, contact_id=c.pk, percent=50)
    )
    result = dry_run(journey=journey, contact=held)
    assert result.outcome.startswith("Held out")
    assert [line.what for line in result.lines if "held out" in line.what]
    assert not any(line.what.startswith("sends") for line in result.lines)


def test_a_copy_keeps_the_split_and_the_holdout():
    journey = ab_journey(holdout_percent=20)
    copy = journey_copy(journey=journey)
    assert copy.holdout_percent == 20
    assert copy.steps.get(key="split").config == {"variants": AB}


# --- Validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        ([{"key": "a", "weight": 1, "goto": "send-a"}], "2 to 5 variants"),
        ([{"key": k, "weight": 1, "goto": "end"} for k in "abcdef"], "2 to 5 variants"),
        ([{"key": "a", "weight": 0, "goto": "end"}, AB[1]], "positive whole number"),
        ([{"key": "a", "weight": "x", "goto": "end"}, AB[1]], "positive whole number"),
        ([{"key": "a", "weight": 1.5, "goto": "end"}, AB[1]], "positive whole number"),
        ([{"key": "a", "weight": 1001, "goto": "end"}, AB[1]], "at most 1000"),
        ([{"key": "a", "weight": 10**6, "goto": "end"}, AB[1]], "at most 1000"),
        ([{"key": "b", "weight": 1, "goto": "end"}, AB[1]], "Two variants are called “b”"),
        ([{"key": "a b", "weight": 1, "goto": "end"}, AB[1]], "letters, digits"),
        ([{"key": "a", "weight": 1}, AB[1]], "Say which step"),
        ("nope", "must be a list"),
    ],
)
def test_bad_variants_are_named(variants, expected):
    assert any(expected in p for p in variants_problems(variants)), variants_problems(variants)
    journey = ab_journey(status="draft")
    Step.objects.filter(journey=journey, key="split").update(config={"variants": variants})
    problems = journey_problems(journey)
    assert any(p.startswith("Step “split”") and expected in p for p in problems), problems
    assert journey_activate(journey=journey) != []


def test_split_gotos_must_exist_and_every_step_must_be_reachable():
    journey = ab_journey(status="draft")
    assert journey_problems(journey) == []
    Step.objects.filter(journey=journey, key="split").update(
        config={"variants": [AB[0], {"key": "b", "weight": 50, "goto": "nowhere"}]}
    )
    problems = journey_problems(journey)
    assert "Step “split” goes to “nowhere”, which is not a step." in problems
    assert "Step “send-b” can never be reached." in problems
    Step.objects.filter(journey=journey, key="split").update(
        config={"variants": [AB[0], {"key": "b", "weight": 50, "goto": "end"}]}
    )
    assert journey_problems(journey) == ["Step “send-b” can never be reached."]


def _split_form(rows: list[tuple[str, str, str]]) -> StepForm:
    data = {"position": 0, "key": "split", "kind": "split"}
    for i, (key, weight, goto) in enumerate(rows):
        data |= {f"variants_key_{i}": key, f"variants_weight_{i}": weight}
        data[f"variants_goto_{i}"] = goto
    return StepForm(data=data)


def test_the_step_form_builds_variants_from_rows_without_json():
    form = _split_form([("a", "90", "send-a"), ("", "", ""), ("b", "10", "end")])
    assert form.is_valid(), form.errors
    assert form.instance.config == {
        "variants": [
            {"key": "a", "weight": 90, "goto": "send-a"},
            {"key": "b", "weight": 10, "goto": "end"},
        ]
    }
    html = StepForm(instance=Step(kind="split", config={"variants": AB})).as_p()
    assert 'name="variants_key_1" value="b"' in html and 'name="variants_goto_4"' in html


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("a", "50", "x")], "2 to 5 variants"),
        ([("a", "0", "x"), ("b", "50", "y")], "positive whole number"),
        ([("a", "ten", "x"), ("b", "50", "y")], "positive whole number"),
        ([("a", "50", "x"), ("a", "50", "y")], "Two variants are called “a”"),
        ([("a", "50", ""), ("b", "50", "y")], "Say which step"),
        ([("a\x00", "50", "x"), ("b", "50", "y")], "letters, digits"),
    ],
)
def test_the_step_form_names_what_is_wrong_with_the_variants(rows, expected):
    form = _split_form(rows)
    assert not form.is_valid()
    assert any(expected in e for e in form.errors["variants"]), form.errors


def test_other_kinds_ignore_the_variant_rows():
    form = StepForm(data={"position": 0, "key": "x", "kind": "exit", "variants_key_0": "a"})
    assert form.is_valid(), form.errors
    assert form.instance.config == {}


def test_the_builder_page_offers_the_split_and_the_holdout(admin_client):
    journey = ab_journey(status="draft")
    page = admin_client.get(f"/admin/journeys/journey/{journey.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="split-variants"' in html and 'name="steps-0-variants_key_0"' in html
    assert 'name="holdout_percent"' in html
    assert f"/admin/touchline/journeys/{journey.pk}/experiment/" in html
    assert '"split": ["variants"]' in html  # the kind → fields map the JS reads


# --- Read side --------------------------------------------------------------------------


def test_the_api_and_the_admin_show_the_holdout_and_the_variants(
    api,
    admin_client,
    simulator,
    ingest,  # noqa: F811
):
    journey = ab_journey(holdout_percent=10)
    people = contacts_in_each(journey)
    for contact in people.values():
        ingest("order.completed", contact)
    held_out = sum(
        in_holdout(journey_slug=journey.slug, contact_id=c.pk, percent=10) for c in people.values()
    )

    detail = api.get(f"/api/v1/journeys/{journey.slug}/").json()
    assert detail["holdout_percent"] == 10
    stats = api.get(f"/api/v1/journeys/{journey.slug}/stats/").json()
    assert stats["enrollments"]["holdout"] == held_out
    [split] = [s for s in stats["steps"] if s["key"] == "split"]
    expected = {
        key: 0 if in_holdout(journey_slug=journey.slug, contact_id=c.pk, percent=10) else 1
        for key, c in sorted(people.items())
    }
    assert split["variants"] == expected
    html = admin_client.get(f"/admin/journeys/journey/{journey.pk}/change/").content.decode()
    assert f"held out {held_out}" in html
    cell = ", ".join(f"{k}: {n}" for k, n in expected.items())
    assert f"<td>split ({cell})</td>" in html


def test_one_enrollment_advanced_alone_records_its_variant_too(simulator):
    from journeys import engine
    from journeys.services import enrollment_start

    journey = ab_journey()
    people = contacts_in_each(journey)
    enrollment = enrollment_start(
        journey=journey, contact=people["b"], event=None, now=dt.datetime.now(dt.UTC)
    )
    # The single-enrollment path writes the visit at once (no deferred batch).
    assert engine.enrollment_advance(enrollment_id=enrollment.pk) == "completed"
    assert StepVisit.objects.get(enrollment=enrollment, step__key="split").outcome == "variant:b"


@pytest.mark.parametrize(("percent", "ok"), [(0, True), (50, True), (51, False)])
def test_holdout_is_at_most_half(admin_client, percent, ok):
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    journey = Journey(name="H", slug="h", trigger_event="x", holdout_percent=percent)
    if ok:
        journey.full_clean()
        return
    with pytest.raises(ValidationError) as caught:
        journey.full_clean()
    assert "holdout_percent" in caught.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        journey.save()


@pytest.mark.parametrize(("value", "saved"), [("20", 20), ("", 0), ("60", None), ("-1", None)])
def test_the_journey_page_takes_a_holdout_of_zero_to_fifty(admin_client, value, saved):
    from tests.journeys.test_segment_triggers import _journey_post

    post = _journey_post(trigger_event="order.completed", holdout_percent=value)
    response = admin_client.post("/admin/journeys/journey/add/", post)
    if saved is None:
        assert response.status_code == 200
        assert "holdout_percent" in response.context["adminform"].form.errors
        assert not Journey.objects.filter(slug="welcome-vips").exists()
    else:
        assert response.status_code == 302
        assert Journey.objects.get(slug="welcome-vips").holdout_percent == saved


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        ("\u00b2", "positive whole number"),  # superscript two: isdigit() but not int()
        ("\u0661", "positive whole number"),  # an Arabic-Indic digit
        ("9" * 5000, "positive whole number"),  # int() refuses more than 4300 digits
        ("1001", "at most 1000"),
    ],
)
def test_the_admin_refuses_odd_split_weights_without_a_500(client, weight, expected):
    from tests.audiences.test_membership import staff
    from tests.journeys.test_segment_triggers import _journey_post

    client.force_login(staff("marketing"))
    client.raise_request_exception = False
    post = _journey_post(trigger_event="order.completed") | {
        "steps-TOTAL_FORMS": "1",
        "steps-0-position": "0",
        "steps-0-key": "split",
        "steps-0-kind": "split",
        "steps-0-variants_key_0": "a",
        "steps-0-variants_weight_0": weight,
        "steps-0-variants_goto_0": "end",
        "steps-0-variants_key_1": "b",
        "steps-0-variants_weight_1": "50",
        "steps-0-variants_goto_1": "end",
    }
    response = client.post("/admin/journeys/journey/add/", post)
    assert response.status_code == 200
    assert expected in response.content.decode()
    assert not Journey.objects.filter(slug="welcome-vips").exists()
