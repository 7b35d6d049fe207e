"""Staff dashboards: the admin home's activity and NPS figures, and one journey's dashboard."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journeys.models import Enrollment, Journey, JourneyMessage, Step, StepVisit, SurveyResponse
from messaging.models import Message
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

HOME_DATA = "/admin/touchline/dashboard/data/"


def journey_page(pk: int) -> str:
    return f"/admin/touchline/journeys/{pk}/dashboard/"


def journey_data(pk: int) -> str:
    return f"/admin/touchline/journeys/{pk}/dashboard/data/"


def day(days_ago: int, hour: int = 12) -> dt.datetime:
    """Noon UTC `days_ago` days before today (inside that UTC day whatever the time now)."""
    today = timezone.now().astimezone(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(hour), tzinfo=dt.UTC)


def message(channel: str, status: str, direction: str = "outbound", **stamps) -> Message:
    """A message row whose status timestamps are set afterwards, as the pipeline would."""
    msg = Message.objects.create(
        direction=direction,
        channel=channel,
        contact=ContactFactory(),
        to_address="x",
        status=status,
        in_reply_to=stamps.pop("in_reply_to", None),
    )
    Message.objects.filter(pk=msg.pk).update(**stamps)
    return msg


def make_journey(slug: str = "post-purchase", name: str = "Post-purchase") -> Journey:
    journey = Journey.objects.create(
        name=name, slug=slug, trigger_event="order.completed", status="active"
    )
    for position, (key, kind) in enumerate(
        [("thanks", "send"), ("wait", "wait"), ("nps", "survey")]
    ):
        Step.objects.create(journey=journey, position=position, key=key, kind=kind)
    return journey


def enroll(journey: Journey) -> Enrollment:
    return Enrollment.objects.create(
        journey=journey, contact=ContactFactory(), entry_policy="every_time", state="waiting"
    )


def answer(journey: Journey, category: str, when: dt.datetime, status: str = "answered"):
    score = {"promoter": 10, "passive": 7, "detractor": 3, "": None}[category]
    enrollment = enroll(journey)
    return SurveyResponse.objects.create(
        journey=journey,
        step=journey.steps.get(key="nps"),
        enrollment=enrollment,
        contact=enrollment.contact,
        status=status,
        score=score,
        nps_category=category,
        answered_at=when,
    )


def staff_user(*perms: str, username: str = "staffer") -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def make_activity(copies: int = 1) -> None:
    for _ in range(copies):
        message("sms", "sent", sent_at=day(0))
        message("sms", "sent", sent_at=day(0))
        message("sms", "delivered", sent_at=day(0), delivered_at=day(0))
        message("email", "read", sent_at=day(1), delivered_at=day(0), read_at=day(0))
        message("whatsapp", "failed", failed_at=day(2))
        message("sms", "undelivered", sent_at=day(2), failed_at=day(1))
        message("sms", "sent", sent_at=day(40))  # outside the 30-day window
        message("sms", "queued")  # not sent yet: counted nowhere
        message("sms", "received", "inbound", received_at=day(0))
        message("sms", "received", "inbound", received_at=day(0))
        message("whatsapp", "received", "inbound", received_at=day(1))


# --- Admin home -----------------------------------------------------------------------


def test_home_data_counts_per_day_and_channel(admin_client):
    make_activity()
    data = admin_client.get(HOME_DATA).json()
    activity = data["activity"]
    assert data["period_days"] == 30 and len(activity["days"]) == 30
    assert activity["days"][-1] == day(0).date().isoformat()
    assert activity["channels"] == ["sms", "whatsapp", "email"]
    series = activity["series"]
    # Index -1 is today, -2 yesterday, -3 the day before.
    assert series["sent"]["sms"][-3:] == [0, 0, 3]
    assert series["sent"]["email"][-3:] == [0, 1, 0]
    assert series["delivered"]["sms"][-1] == 1 and series["delivered"]["email"][-1] == 1
    assert series["failed"]["whatsapp"][-3:] == [1, 0, 0]
    assert series["failed"]["sms"][-3:] == [0, 1, 0]
    assert series["replies"]["sms"][-1] == 2 and series["replies"]["whatsapp"][-2] == 1
    assert activity["totals"]["sent"] == {"sms": 3, "whatsapp": 0, "email": 1, "all": 4}
    assert activity["totals"]["failed"]["all"] == 2
    assert activity["totals"]["replies"]["all"] == 3
    longer = admin_client.get(HOME_DATA, {"days": 90}).json()["activity"]
    assert longer["totals"]["sent"]["sms"] == 4 and len(longer["days"]) == 90


def test_home_data_nps_overall_and_per_journey(admin_client):
    post = make_journey()
    survey = make_journey("survey", "NPS survey")
    for category in ("promoter", "promoter", "passive", "detractor"):
        answer(post, category, day(1))
    answer(post, "", day(1), status="timed_out")  # no score: not in NPS
    answer(post, "promoter", day(45))  # outside the window
    answer(survey, "detractor", day(3))
    data = admin_client.get(HOME_DATA).json()
    overall = data["nps"]["overall"]
    assert (overall["promoters"], overall["passives"], overall["detractors"]) == (2, 1, 2)
    assert overall["answered"] == 5 and overall["score"] == 0.0
    per_journey = {j["slug"]: j for j in data["nps"]["journeys"]}
    assert per_journey["post-purchase"]["score"] == 25.0
    assert per_journey["post-purchase"]["answered"] == 4
    assert per_journey["survey"]["score"] == -100.0
    assert per_journey["survey"]["dashboard_url"] == journey_page(survey.pk)
    links = [(j["name"], j["dashboard_url"]) for j in data["journeys"]]
    assert links == [
        ("NPS survey", journey_page(survey.pk)),
        ("Post-purchase", journey_page(post.pk)),
    ]


def test_home_data_with_nothing_yet(admin_client):
    data = admin_client.get(HOME_DATA, {"days": "nonsense"}).json()
    assert data["period_days"] == 30
    assert all(n == 0 for n in data["activity"]["series"]["sent"]["sms"])
    assert data["activity"]["totals"]["replies"]["all"] == 0
    assert data["nps"]["overall"]["score"] is None and data["nps"]["journeys"] == []
    assert data["journeys"] == []


def test_home_data_query_count_does_not_grow_with_messages(
    admin_client, django_assert_max_num_queries
):
    make_journey()
    make_activity()
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(HOME_DATA).status_code == 200
    make_activity(copies=5)
    answer(Journey.objects.get(), "promoter", day(0))
    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(HOME_DATA)
    assert response.json()["activity"]["totals"]["sent"]["all"] == 24


def test_home_page_shows_the_dashboard_above_the_app_list(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert 'id="touchline-dashboard"' in page
    assert "touchline/vendor/chart.umd.min.js" in page and "touchline/dashboard.js" in page
    assert "app-messaging" in page  # the app list is still there
    # Every script and stylesheet is served locally (no CDN). (Not a substring test: the
    # page's random CSRF token once contained "cdn".)
    assets = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page) + re.findall(
        r'<link[^>]*\shref="([^"]+)"', page
    )
    assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets)


def test_home_dashboard_permissions(client):
    assert client.get(HOME_DATA).status_code == 302
    client.force_login(staff_user())
    assert client.get(HOME_DATA).status_code == 403
    assert 'id="touchline-dashboard"' not in client.get("/admin/").content.decode()
    client.force_login(staff_user("messaging.view_message", username="analyst"))
    data = client.get(HOME_DATA).json()
    assert "activity" in data and "nps" not in data  # NPS needs journeys.view_journey


# --- One journey ----------------------------------------------------------------------


def test_journey_dashboard_funnel_channel_rates_and_weekly_nps(admin_client):
    journey = make_journey()
    steps = {s.key: s for s in journey.steps.all()}
    enrollments = [enroll(journey) for _ in range(4)]
    for n, enrollment in enumerate(enrollments):
        reached = ["thanks", "wait", "nps"][: 3 if n < 2 else (2 if n == 2 else 1)]
        for key in reached:
            StepVisit.objects.create(enrollment=enrollment, step=steps[key], entered_at=day(3))
    sent_messages = [
        message("sms", "delivered", sent_at=day(2), delivered_at=day(2)),
        message("sms", "delivered", delivered_at=day(2)),  # callback beat the worker: no sent_at
        message("sms", "undelivered", sent_at=day(2), failed_at=day(2)),
        message("sms", "sent", sent_at=day(2)),
        message("email", "sent", sent_at=day(2)),
        message("whatsapp", "skipped", skipped_at=day(2)),
    ]
    message("sms", "received", "inbound", received_at=day(1), in_reply_to=sent_messages[0])
    message("sms", "received", "inbound", received_at=day(1), in_reply_to=sent_messages[0])
    for n, msg in enumerate(sent_messages):
        JourneyMessage.objects.create(
            message=msg, enrollment=enrollments[n % 4], step=steps["thanks"], journey=journey
        )
    this_week = timezone.now().astimezone(dt.UTC)
    answer(journey, "promoter", this_week)
    answer(journey, "detractor", this_week)
    answer(journey, "passive", this_week - dt.timedelta(weeks=2))

    data = admin_client.get(journey_data(journey.pk)).json()
    assert data["journey"]["slug"] == "post-purchase"
    assert [(s["key"], s["entered"]) for s in data["funnel"]] == [
        ("thanks", 4),
        ("wait", 3),
        ("nps", 2),
    ]
    channels = {c["channel"]: c for c in data["channels"]}
    sms = channels["sms"]
    assert (sms["sent"], sms["delivered"], sms["failed"], sms["replied"]) == (4, 2, 1, 1)
    assert (sms["delivery_rate"], sms["reply_rate"]) == (0.5, 0.25)
    assert (channels["email"]["delivery_rate"], channels["email"]["reply_rate"]) == (0.0, 0.0)
    assert channels["whatsapp"]["sent"] == 0 and channels["whatsapp"]["delivery_rate"] is None
    weeks = data["nps_weekly"]
    assert len(weeks) == 12
    monday = this_week.date() - dt.timedelta(days=this_week.weekday())
    assert weeks[-1]["week"] == monday.isoformat()
    assert (weeks[-1]["promoters"], weeks[-1]["detractors"], weeks[-1]["score"]) == (1, 1, 0.0)
    assert weeks[-2]["answered"] == 0 and weeks[-2]["score"] is None
    assert (weeks[-3]["passives"], weeks[-3]["score"]) == (1, 0.0)
    assert data["nps"]["promoters"] == 1 and data["nps"]["score"] == 0.0
    assert len(admin_client.get(journey_data(journey.pk), {"weeks": 52}).json()["nps_weekly"]) == 52


def test_journey_dashboard_with_no_data(admin_client):
    journey = Journey.objects.create(name="Empty", slug="empty", trigger_event="x")
    page = admin_client.get(journey_page(journey.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert journey_data(journey.pk) in html and "touchline/vendor/chart.umd.min.js" in html
    data = admin_client.get(journey_data(journey.pk)).json()
    assert data["funnel"] == [] and data["channels"] == []
    assert data["nps"]["score"] is None
    assert all(w["answered"] == 0 and w["score"] is None for w in data["nps_weekly"])


def test_journey_dashboard_query_count_does_not_grow_with_messages(
    admin_client, django_assert_max_num_queries
):
    journey = make_journey()
    step = journey.steps.get(key="thanks")

    def send(n: int) -> None:
        for _ in range(n):
            msg = message("sms", "delivered", sent_at=day(1), delivered_at=day(1))
            JourneyMessage.objects.create(
                message=msg, enrollment=enroll(journey), step=step, journey=journey
            )
            answer(journey, "promoter", day(1))

    send(1)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(journey_data(journey.pk)).status_code == 200
    send(10)
    with django_assert_max_num_queries(len(few)):
        data = admin_client.get(journey_data(journey.pk)).json()
    assert data["channels"][0]["sent"] == 11


def test_journey_dashboard_permissions(client, admin_client):
    journey = make_journey()
    assert client.get(journey_page(journey.pk)).status_code == 302
    client.force_login(staff_user())
    assert client.get(journey_page(journey.pk)).status_code == 403
    assert client.get(journey_data(journey.pk)).status_code == 403
    assert admin_client.get(journey_page(999999)).status_code == 404
    assert admin_client.get(journey_data(999999)).status_code == 404
