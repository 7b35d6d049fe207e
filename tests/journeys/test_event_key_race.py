"""Two requests with one Idempotency-Key and different bodies: the one that loses the race
gets its 409 and changes nothing, not even the contact it names (the key is claimed before
the contact is touched, so racing requests for one key queue behind each other)."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from journeys import services
from journeys.api import ingest
from journeys.models import Event
from messaging.models import ApiKey, Contact
from messaging.services import IdempotencyConflict

ROUNDS = 4
RACERS = 8


@pytest.fixture(autouse=True)
def _no_pending_kick():
    cache.delete(services.EVENTS_KICK_FLAG)
    yield
    cache.delete(services.EVENTS_KICK_FLAG)


def body(external_id: str, racer: int) -> dict:
    return {
        "name": "thing.happened",
        "contact": {
            "external_id": external_id,
            "first_name": f"Racer {racer}",
            "attributes": {f"racer_{racer}": True},
        },
        "properties": {"racer": racer},
    }


@pytest.mark.django_db
def test_a_request_that_finds_the_key_taken_once_it_holds_it_leaves_the_contact_alone(api):
    """The request looked the key up (not there yet), then the other request committed: once
    it has claimed the key it sees the winner, and its 409 writes nothing."""
    first = api.post("/api/v1/events/", body("c1", 1), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 202
    prefix = api._credentials["HTTP_AUTHORIZATION"].split()[1].split(".")[0]
    loser = body("c1", 2)

    with pytest.raises(IdempotencyConflict):
        ingest(loser, loser, "k", prefix, existing=None)  # as if its look-up had missed

    contact = Contact.objects.get(external_id="c1")
    assert (contact.first_name, contact.attributes) == ("Racer 1", {"racer_1": True})
    assert Event.objects.count() == 1


def race(api_key: str, external_id: str) -> dict[int, tuple[int, dict]]:
    """RACERS clients post at the same instant, one key, a body each; each client's answer."""
    barrier = threading.Barrier(RACERS)
    answers: dict[int, tuple[int, dict]] = {}
    errors: list[BaseException] = []

    def one(racer: int) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
            barrier.wait(timeout=30)
            response = client.post(
                "/api/v1/events/",
                body(external_id, racer),
                format="json",
                HTTP_IDEMPOTENCY_KEY=external_id,
            )
            answers[racer] = (response.status_code, response.json())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[:3]
    return answers


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_racing_requests_with_one_key_and_different_bodies_leave_only_the_winners_changes():
    """RACERS real requests at once (threads, each its own database connection) per round,
    one key, a body each: one 202, every other a 409, no 5xx (no deadlock), and the contact
    carries the winner's fields only."""
    _, api_key = ApiKey.objects.create_key(name="race", scopes=["events:write", "events:read"])

    for r in range(ROUNDS):
        external_id = f"race-{r}"  # a new contact each round: its creation races too
        answers = race(api_key, external_id)

        statuses = sorted(status for status, _ in answers.values())
        assert statuses == [202] + [409] * (RACERS - 1), answers
        [winner] = [racer for racer, (status, _) in answers.items() if status == 202]
        event = Event.objects.get(idempotency_key__endswith=f":{external_id}")
        assert event.properties == {"racer": winner}
        contact = Contact.objects.get(external_id=external_id)
        assert contact.first_name == f"Racer {winner}"
        assert contact.attributes == {f"racer_{winner}": True}, "a loser's changes were left"
    assert Event.objects.count() == ROUNDS
