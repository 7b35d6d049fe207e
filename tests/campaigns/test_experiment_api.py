"""Experiment settings through the API and the admin form: field-level 4xx for bad variants,
weights, shares and winner settings; the dry run's split; the report's variants and holdout."""

from __future__ import annotations

import datetime as dt

import pytest
from django import forms
from django.contrib.auth.models import Group, User
from django.urls import reverse

from audit.models import AuditEntry
from campaigns import services
from campaigns.errors import BroadcastError
from campaigns.forms import VariantsField
from campaigns.models import Broadcast
from journeys.staff_groups import ensure_staff_groups
from tests.factories import TemplateFactory

from .ui_helpers import NOW, sms_subscriber, static_segment, templates

pytestmark = pytest.mark.django_db

AB = [{"template_slug": "promo", "weight": 50}, {"template_slug": "promo-b", "weight": 50}]


def _errors(response) -> dict[str, str]:
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def _body(**extra):
    return {
        "name": "Black Friday",
        "slug": "black-friday",
        "segments": ["everyone"],
        "template_slug": "promo",
        "channel_order": ["sms", "email"],
        **extra,
    }


@pytest.fixture
def world():
    templates()
    TemplateFactory(slug="promo-b", channel="sms", body="B: hi {{ contact.first_name }}")
    TemplateFactory(slug="email-only", channel="email", subject="S", body="x")
    contacts = [sms_subscriber() for _ in range(20)]
    return {"everyone": static_segment("everyone", contacts), "contacts": contacts}


def test_the_api_creates_an_experiment_and_reports_it(api, world):
    body = _body(
        variants=AB,
        holdout_percent=20,
        variant_test_percent=30,
        winner_after_hours=6,
        winner_metric="clicked",
    )
    response = api.post("/api/v1/broadcasts/", body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["variants"] == AB and created["holdout_percent"] == 20
    assert created["winner_metric"] == "clicked" and created["winner_variant"] == ""
    entry = AuditEntry.objects.get(action="create")
    assert "variants" in entry.changes and "holdout_percent" in entry.changes

    split = api.get("/api/v1/broadcasts/black-friday/dry-run/").json()["split"]
    assert sum(split["variants"].values()) + split["control"] + split["awaiting_winner"] == 20

    broadcast = Broadcast.objects.get()
    services.broadcast_launch(broadcast=broadcast, actor="test", now=NOW)
    report = api.get("/api/v1/broadcasts/black-friday/report/")
    assert report.status_code == 200, report.json()
    experiment = report.json()["experiment"]
    assert [v["variant"] for v in experiment["variants"]] == ["promo", "promo-b"]
    assert experiment["control"] == split["control"]
    assert experiment["awaiting_winner"] == split["awaiting_winner"]
    assert experiment["holdout"]["control"] == split["control"]
    assert experiment["winner_metric"] == "clicked" and experiment["winner_due_at"]

    changed = api.patch("/api/v1/broadcasts/black-friday/", {"holdout_percent": 0}, format="json")
    assert changed.status_code == 409  # launched: frozen


def test_without_an_experiment_the_report_and_dry_run_say_so(api, world):
    api.post("/api/v1/broadcasts/", _body(), format="json")
    assert api.get("/api/v1/broadcasts/black-friday/dry-run/").json()["split"] is None
    assert api.get("/api/v1/broadcasts/black-friday/report/").json()["experiment"] is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"variants": AB[:1]}, "variants"),  # one variant is no experiment
        ({"variants": AB * 3}, "variants"),  # six
        ({"variants": [AB[0], AB[0]]}, "variants"),  # the same twice
        ({"variants": [AB[0], {"template_slug": "promo-b", "weight": 0}]}, "variants.1.weight"),
        ({"variants": [AB[0], {"template_slug": "promo-b", "weight": 101}]}, "variants.1.weight"),
        ({"variants": [AB[0], {"template_slug": "nope", "weight": 5}]}, "variants"),
        (
            {
                "variants": [AB[0], {"template_slug": "email-only", "weight": 5}],
                "channel_order": ["sms"],
            },
            "variants",
        ),  # no template on the order's channels
        ({"variants": [AB[0], {"template_slug": "b c", "weight": 5}]}, "variants.1.template_slug"),
        ({"variants": [AB[0], {"template_slug": "promo-b", "w": 5}]}, "variants.1.w"),
        ({"variants": "promo"}, "variants"),
        ({"variants": [{"template_slug": "a\u0000", "weight": 1}] * 2}, "variants.0.template_slug"),
        ({"holdout_percent": 51}, "holdout_percent"),
        ({"holdout_percent": -1}, "holdout_percent"),
        ({"variants": AB, "variant_test_percent": 0}, "variant_test_percent"),
        ({"variants": AB, "variant_test_percent": 51}, "variant_test_percent"),
        ({"variants": AB, "winner_after_hours": 169}, "winner_after_hours"),
        ({"variants": AB, "winner_metric": "revenue"}, "winner_metric"),
        # the winner settings come together, and need two variants
        ({"variants": AB, "variant_test_percent": 10}, "winner_after_hours"),
        (
            {"variant_test_percent": 10, "winner_after_hours": 2, "winner_metric": "opened"},
            "variants",
        ),
        # choosing by conversions needs conversion events
        (
            {
                "variants": AB,
                "variant_test_percent": 10,
                "winner_after_hours": 2,
                "winner_metric": "converted",
            },
            "winner_metric",
        ),
    ],
)
def test_bad_experiment_settings_are_field_level_400s(api, world, extra, field):
    response = api.post("/api/v1/broadcasts/", _body(**extra), format="json")
    assert response.status_code == 400, response.json()
    assert field in _errors(response), response.json()
    assert not Broadcast.objects.exists()


def test_the_send_window_must_leave_room_for_the_winner(world):
    broadcast = Broadcast.objects.create(
        name="W",
        slug="w",
        template_slug="promo",
        channel_order=["sms"],
        variants=AB,
        variant_test_percent=10,
        winner_after_hours=24,
        winner_metric="delivered",
        end_at=NOW + dt.timedelta(hours=2),
    )
    broadcast.segments.set([world["everyone"]])
    with pytest.raises(BroadcastError) as exc:
        services.broadcast_launch(broadcast=broadcast, actor="test", now=NOW)
    assert "winner_after_hours" in exc.value.errors
    assert broadcast.recipients.count() == 0


LOCAL_TEST = {
    "variants": AB,
    "variant_test_percent": 10,
    "winner_after_hours": 2,
    "winner_metric": "delivered",
    "send_mode": "local",
    "local_send_time": "10:00",
}


def test_test_then_winner_is_refused_with_a_local_send_time(api, world):
    """The winner would be due hours after the first zone's send, before the later zones'
    test groups were sent: refused on the draft (API) and at launch."""
    day = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    response = api.post(
        "/api/v1/broadcasts/", _body(**LOCAL_TEST, local_send_date=day), format="json"
    )
    assert response.status_code == 400, response.json()
    assert "cannot be used with a local send time" in _errors(response)["variant_test_percent"]
    assert not Broadcast.objects.exists()
    # variants by weight (no test) with a local send time are fine
    fine = {
        k: v for k, v in LOCAL_TEST.items() if k in ("variants", "send_mode", "local_send_time")
    }
    ok = api.post("/api/v1/broadcasts/", _body(**fine, local_send_date=day), format="json")
    assert ok.status_code == 201, ok.json()


def test_the_launch_refuses_test_then_winner_with_a_local_send_time(world):
    broadcast = Broadcast.objects.create(
        name="L",
        slug="l",
        template_slug="promo",
        channel_order=["sms"],
        **{k: v for k, v in LOCAL_TEST.items() if k != "local_send_time"},
        local_send_date=(NOW + dt.timedelta(days=2)).date(),
        local_send_time=dt.time(10),
    )
    broadcast.segments.set([world["everyone"]])
    with pytest.raises(BroadcastError) as exc:
        services.broadcast_launch(broadcast=broadcast, actor="test", now=NOW)
    assert "variant_test_percent" in exc.value.errors
    assert broadcast.recipients.count() == 0


# --- the admin -------------------------------------------------------------------------------


@pytest.fixture
def marketer(client):
    ensure_staff_groups()
    user = User.objects.create_user("marketing", email="m@staff.example", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing"))
    client.force_login(user)
    return user


def _form(audience, **extra):
    return {
        "name": "Black Friday",
        "slug": "black-friday",
        "description": "",
        "segments": [audience.pk],
        "template_slug": "promo",
        "channel_order_0": "sms",
        "channel_order_1": "",
        "channel_order_2": "",
        "channel_order_3": "",
        "category": "marketing",
        "send_mode": "now",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "frequency_cap_action": "hold",
        "goal_window_hours": "72",
        "conversion_window_hours": "72",
        "attribution_model": "last_click",
        **extra,
    }


def test_the_admin_form_takes_variants_as_lines_and_the_review_shows_the_split(
    client, marketer, world
):
    add = reverse("admin:campaigns_broadcast_add")
    bad = client.post(add, _form(world["everyone"], variants="promo 50\npromo-b lots"))
    assert bad.status_code == 200 and "Line 2" in bad.content.decode()
    bad = client.post(add, _form(world["everyone"], variants="promo 50\npromo 50"))
    assert bad.status_code == 200 and "already a variant" in bad.content.decode()
    assert not Broadcast.objects.exists()

    response = client.post(
        add,
        _form(
            world["everyone"],
            variants="promo 70\npromo-b 30",
            holdout_percent="10",
            variant_test_percent="50",
            winner_after_hours="4",
            winner_metric="delivered",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    broadcast = Broadcast.objects.get()
    assert broadcast.variants == [
        {"template_slug": "promo", "weight": 70},
        {"template_slug": "promo-b", "weight": 30},
    ]
    assert broadcast.holdout_percent == 10 and broadcast.winner_metric == "delivered"
    change = client.get(reverse("admin:campaigns_broadcast_change", args=[broadcast.pk]))
    assert "promo 70\npromo-b 30" in change.content.decode()

    review = client.get(reverse("admin:campaigns_broadcast_review", args=[broadcast.pk]))
    html = review.content.decode()
    assert 'id="dry-run-split"' in html and "await the winner" in html
    assert "control group (held out, never sent)" in html


@pytest.mark.parametrize(
    "weights", ["\u00b2", "9" * 5000, "\u0661\u0662", "1000"]
)  # superscript two, 5000 digits, Arabic-Indic digits, over 100
def test_the_admin_form_refuses_odd_variant_weights_without_a_500(client, marketer, world, weights):
    add = reverse("admin:campaigns_broadcast_add")
    client.raise_request_exception = False
    bad = client.post(add, _form(world["everyone"], variants=f"promo {weights}\npromo-b 50"))
    assert bad.status_code == 200 and "Line 1" in bad.content.decode()
    assert not Broadcast.objects.exists()


@pytest.mark.parametrize(
    "text", ["promo-a \u00b2\npromo-b 50", "promo-a " + "9" * 5000 + "\npromo-b 50"]
)
def test_the_variants_field_refuses_odd_weights_as_a_validation_error(text):
    with pytest.raises(forms.ValidationError):
        VariantsField(required=False).clean(text)


def test_the_admin_form_refuses_test_then_winner_with_a_local_send_time(client, marketer, world):
    add = reverse("admin:campaigns_broadcast_add")
    day = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    response = client.post(
        add,
        _form(
            world["everyone"],
            variants="promo 50\npromo-b 50",
            variant_test_percent="10",
            winner_after_hours="2",
            winner_metric="delivered",
            send_mode="local",
            local_send_date=day,
            local_send_time="10:00",
        ),
    )
    assert response.status_code == 200
    assert "cannot be used with a local send time" in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_report_page_shows_the_variants_and_the_holdout(client, marketer, world):
    broadcast = Broadcast.objects.create(
        name="R",
        slug="r",
        template_slug="promo",
        channel_order=["sms"],
        variants=AB,
        holdout_percent=30,
    )
    broadcast.segments.set([world["everyone"]])
    services.broadcast_launch(broadcast=broadcast, actor="test", now=NOW)
    page = client.get(reverse("admin:campaigns_broadcast_report", args=[broadcast.pk]))
    html = page.content.decode()
    assert 'id="broadcast-variants"' in html and 'data-variant="promo-b"' in html
    assert 'id="broadcast-holdout"' in html
    data = client.get(reverse("admin:campaigns_broadcast_report_data", args=[broadcast.pk]))
    assert data.json()["experiment"]["holdout_percent"] == 30
