"""The rows every role test runs against, and what they check afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.utils import timezone

from audiences.services import segment_create
from channels_app.events import InboundEvent
from journeys.blueprints import install_blueprints
from journeys.lifecycle import journey_copy, journey_set_status
from journeys.models import Enrollment, Event, Journey, SurveyResponse
from journeys.services import event_ingest
from journeys.staff_groups import ensure_staff_groups
from messaging.models import ApiKey, Contact, Message, Template
from messaging.provider_events import inbound_message_apply
from outbound.models import EventType, WebhookDelivery, WebhookSubscription
from outbound.services import subscription_create
from tests.factories import ConsentFactory, ContactFactory, TemplateFactory

ROLES = ("viewer", "support", "marketing", "superuser")
ALL = frozenset(ROLES)
SUPERUSER = frozenset({"superuser"})
NOBODY: frozenset[str] = frozenset()

# --- The world every case runs in -------------------------------------------------------


@dataclass
class World:
    users: dict[str, User]
    customer: Contact
    test_contact: Contact
    template: Template
    active_journey: Journey
    paused_journey: Journey
    draft_journey: Journey
    enrollment: Enrollment
    event: Event
    survey_response: SurveyResponse
    message: Message
    api_key: ApiKey
    subscription: WebhookSubscription
    delivery: WebhookDelivery
    victim: User
    group: Group
    objects: dict[str, Any] = field(default_factory=dict)


def build_world(simulator, django_capture_on_commit_callbacks) -> World:
    ensure_staff_groups()
    users = {
        role: User.objects.create_user(role, email=f"{role}@staff.example", is_staff=True)
        for role in ("viewer", "support", "marketing")
    }
    for role, user in users.items():
        user.groups.add(Group.objects.get(name=role.title()))
    users["superuser"] = User.objects.create_superuser("root", "root@staff.example", "x")

    install_blueprints(activate=True)
    customer = ContactFactory(phone="+14155550101", email="customer@example.com")
    ConsentFactory(contact=customer, channel="sms")
    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=customer, properties={"order_id": "9"})
        event, _ = event_ingest(name="nothing.listens", contact=customer, properties={})
    with django_capture_on_commit_callbacks(execute=True):
        inbound_message_apply(
            event=InboundEvent(
                provider="twilio",
                channel="sms",
                timestamp=timezone.now(),
                event_id="SMroles1",
                sender=customer.phone,
                recipient="+15005550006",
                body="Where is my order?",
            )
        )
    active = Journey.objects.get(slug="post-purchase", status=Journey.Status.ACTIVE)
    paused = Journey.objects.get(slug="onboarding", status=Journey.Status.ACTIVE)
    journey_set_status(journey=paused, status=Journey.Status.PAUSED)
    draft = journey_copy(journey=active, slug="scratch", name="Scratch")
    enrollment = Enrollment.objects.get(contact=customer, journey=active)
    assert enrollment.state == Enrollment.State.WAITING
    message = Message.objects.filter(contact=customer, direction="outbound").first()
    survey_response = SurveyResponse.objects.create(
        journey=active,
        step=active.steps.get(key="nps"),
        enrollment=enrollment,
        contact=customer,
        status="answered",
        raw_answer="9",
        score=9,
        answered_at=timezone.now(),
    )
    api_key, _ = ApiKey.objects.create_key(name="roles", scopes=[])
    subscription = subscription_create(
        url="https://hooks.example.com/touchline", event_types=[EventType.values[0]]
    )
    subscription.is_active, subscription.disabled_reason = False, "too many failures"
    subscription.save()
    delivery = WebhookDelivery.objects.create(
        subscription=subscription, event_type=EventType.values[0], payload={"x": 1}
    )
    test_contact = ContactFactory(
        phone="+14155550199", email="qa@staff.example", is_test=True, test_owner=None
    )
    world = World(
        users=users,
        customer=customer,
        test_contact=test_contact,
        template=TemplateFactory(channel="sms", body="Test for {{ contact.first_name }}"),
        active_journey=active,
        paused_journey=paused,
        draft_journey=draft,
        enrollment=enrollment,
        event=Event.objects.get(pk=event.pk),
        survey_response=survey_response,
        message=message,
        api_key=api_key,
        subscription=subscription,
        delivery=delivery,
        victim=User.objects.create_user("victim", is_staff=True),
        group=Group.objects.create(name="Temporary"),
    )
    world.objects["segment"] = segment_create(
        name="SMS reachable", slug="sms-reachable", kind="dynamic", definition={"reachable": "sms"}
    )
    world.objects["static_segment"] = segment_create(
        name="Hand-picked", slug="hand-picked", kind="static"
    )
    world.objects["contact_import"] = _validated_import()
    simulator.reset()
    return world


def _validated_import():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audiences.import_models import ContactImport
    from audiences.imports import import_create, import_transition, import_validate

    contact_import = import_create(
        file=SimpleUploadedFile(
            "m.csv", b"external_id,email,first_name\nmatrix-1,m@example.com,M\n"
        )
    )
    import_transition(contact_import=contact_import, to=ContactImport.Status.VALIDATING)
    import_validate(contact_import=contact_import)
    contact_import.refresh_from_db()
    return contact_import


def fresh(obj: Any) -> Any:
    return type(obj).objects.get(pk=obj.pk)


# --- Helpers ----------------------------------------------------------------------------


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table (sessions aside: logging in writes one)."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.label != "sessions.Session"
    }


def login(client, world: World, role: str):
    client.force_login(world.users[role])
    return client


def assert_untouched(before, simulator, what: str) -> None:
    after = snapshot()
    changed = [label for label in before if before[label] != after[label]]
    assert changed == [], f"{what} changed {changed}"
    assert simulator.messages() == [], f"{what} sent something"
